# The image every mhogo service in compose.yaml runs; the command picks the service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# The CPU build of torch first: the default index would bring a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mhogo mhogo
COPY core core
COPY ml ml
COPY producers producers
COPY schemas schemas
COPY workers workers
COPY samples samples
RUN pip install . && useradd --create-home --uid 1000 mhogo && mkdir /data && chown mhogo /data

USER mhogo
ENV MHOGO_HOME=/data MHOGO_FLOWER_PORT=5555
EXPOSE 8000 5555
CMD ["mhogo", "api"]

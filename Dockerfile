# The image every mhogo service in compose.yaml runs; the command picks the service.

# The farmer's app, built by npm from its lockfile (its translations are the catalogue in schemas/).
FROM node:20-slim AS farmer-app
WORKDIR /build
COPY schemas/catalogue schemas/catalogue
COPY app/package.json app/package-lock.json app/
RUN cd app && npm ci --no-audit --no-fund
COPY app app
RUN cd app && npm run build

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
COPY --from=farmer-app /build/app/dist /srv/farmer-app
RUN pip install . && useradd --create-home --uid 1000 mhogo && mkdir /data && chown mhogo /data

USER mhogo
ENV MHOGO_HOME=/data MHOGO_FLOWER_PORT=5555 MHOGO_APP_DIR=/srv/farmer-app
EXPOSE 8000 5555
CMD ["mhogo", "api"]

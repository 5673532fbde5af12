"""The on-device model for the farmer's app: GET /v1/model describes the champion's phone build (core.phone_model),
GET /v1/model/<sha256>.onnx gives its bytes, which never change under that name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from sqlmodel import Session

from core import registry
from core.phone_model import PhoneBuildFile
from producers.api.deps import PollingDevice, Services, ServicesDep, SessionDep
from schemas.api import PhoneModel, Problem

router = APIRouter()

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": Problem} for code in (401, 404, 422, 429, 503)}
BEING_MADE_S = 60  # Retry-After while the build is being made
BEING_MADE = "The model for the phone is being prepared. Keep the one you have and ask again later."
IMMUTABLE = "private, max-age=31536000, immutable"
BINARY = {"type": "string", "format": "binary"}


def champion_build(services: Services, session: Session) -> PhoneBuildFile:
    """The champion's phone build; 503 with Retry-After while it is being made (after a promotion)."""
    row = registry.ensure_champion(session, services.blobs, services.settings.model_path)
    build = services.phone_builds.ready(row)
    if build is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, BEING_MADE, {"Retry-After": str(BEING_MADE_S)})
    return build


def matches(if_none_match: str | None, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")]
    return "*" in tags or etag in tags


@router.get(
    "/v1/model",
    response_model=PhoneModel,
    responses=ERRORS | {304: {"description": "Not Modified: the build If-None-Match names is still the one"}},
    summary="The on-device model: the champion's phone build, how to prepare a photo for it, where to fetch it",
)
def phone_model(request: Request, services: ServicesDep, session: SessionDep, device: PollingDevice) -> Response:
    """Its ETag is the build's sha256: an app that has it asks with If-None-Match and gets 304 until the champion
    changes."""
    build = champion_build(services, session)
    headers = {"ETag": f'"{build.sha256}"', "Cache-Control": "no-cache"}
    if matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return JSONResponse(build.manifest, headers=headers)


@router.get(
    "/v1/model/{sha256}.onnx",
    response_class=FileResponse,
    responses=ERRORS | {200: {"content": {"application/octet-stream": {"schema": BINARY}}}},
    summary="The on-device model's bytes (ONNX), by the sha256 GET /v1/model gives",
)
def phone_model_file(
    sha256: Annotated[str, PathParam(pattern="^[0-9a-f]{64}$")],
    services: ServicesDep,
    session: SessionDep,
    device: PollingDevice,
) -> FileResponse:
    build = champion_build(services, session)
    if sha256 != build.sha256:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such model for the phone: ask GET /v1/model which one "
                            "to fetch.")  # fmt: skip
    return FileResponse(build.path, media_type="application/octet-stream",
                        headers={"Cache-Control": IMMUTABLE, "ETag": f'"{build.sha256}"'})  # fmt: skip

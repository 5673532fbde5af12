"""FastAPI dependencies: what a route needs, provided per request and swappable in tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from core.blobs import BlobStore
from core.config import Settings
from core.db import close_session
from core.devices import device_for_token
from core.publisher import Publisher
from producers.api.backlog import Backlog
from producers.api.ratelimit import DeviceLimiter
from producers.intake import GroupIntake
from schemas.tables import Device

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the routes use, made once at startup (see app.create_app)."""

    settings: Settings
    engine: Engine
    blobs: BlobStore
    publisher: Publisher
    backlog: Backlog | None = None  # the photo queues' depth, for backpressure; None: never refuse for it
    limiter: DeviceLimiter | None = None  # per-device rate limits; None: no limit
    intake: GroupIntake = field(init=False)  # accepts concurrent uploads together (producers.intake)

    def __post_init__(self) -> None:
        self.intake = GroupIntake(lambda: Session(self.engine, expire_on_commit=False), self.blobs, self.publisher,
                                  self.settings.MAX_IMAGE_PIXELS)  # fmt: skip


async def get_services(request: Request) -> Services:  # async: no thread hop for an attribute read
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    session = Session(services.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        close_session(session)


SessionDep = Annotated[Session, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="The device token from `mhogo devices add NAME`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None) -> Device:
    device = device_for_token(session, credentials.credentials) if credentials else None
    if device is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing or unknown device token. Send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return device


def limit_rate(services: Services, device: Device, action: str) -> None:
    """429 with Retry-After when the device has used up its rate for `action`."""
    wait = services.limiter.wait_s(device.id or 0, action) if services.limiter is not None else None
    if wait is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "Too many requests from this phone. Wait a "
                            "little and send again.", headers={"Retry-After": str(int(wait + 0.999))})  # fmt: skip


def get_device(session: SessionDep, credentials: Credentials) -> Device:
    return authenticate(session, credentials)


DeviceDep = Annotated[Device, Depends(get_device)]


def rate_limited(action: str) -> Callable[[Device, Services], Device]:
    """A dependency: the device, unless it has used up its rate for `action` (429 with Retry-After)."""

    def check(device: DeviceDep, services: ServicesDep) -> Device:
        limit_rate(services, device, action)
        return device

    return check


UploadingDevice = Annotated[Device, Depends(rate_limited("upload"))]
FeedbackDevice = Annotated[Device, Depends(rate_limited("feedback"))]
ReportingDevice = Annotated[Device, Depends(rate_limited("events"))]

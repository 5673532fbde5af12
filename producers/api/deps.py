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
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from core.blobs import BlobStore
from core.config import Settings
from core.db import close_session
from core.devices import device_for_token, token_revoked
from core.namespace import Namespace
from core.phone_model import PhoneBuilds
from core.publisher import Publisher
from producers.api import problems
from producers.api.backlog import Backlog
from producers.api.inflight import InFlight
from producers.api.ratelimit import RateLimiter
from producers.intake import GroupIntake
from schemas.catalogue import text
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
    limiter: RateLimiter | None = None  # per device and per client address (producers.api.ratelimit); None: none
    namespace: Namespace | None = None  # the deployment's keys in Redis; None: the database's, read as the app starts
    intake: GroupIntake = field(init=False)  # accepts concurrent uploads together (producers.intake)
    in_flight: InFlight = field(init=False)  # uploads each device holds at once in this process
    phone_builds: PhoneBuilds = field(init=False)  # the on-device model, ready or being made (GET /v1/model)

    def __post_init__(self) -> None:
        self.intake = GroupIntake(lambda: Session(self.engine, expire_on_commit=False), self.blobs, self.publisher,
                                  self.settings.MAX_IMAGE_PIXELS, self.settings.IMAGE_CHECK_THREADS,
                                  self.settings.LARGE_IMAGE_CHECK_THREADS)  # fmt: skip
        self.in_flight = InFlight(self.settings.MAX_UPLOADS_IN_FLIGHT)
        self.phone_builds = PhoneBuilds(self.settings, self.blobs)

    def deployment(self) -> Namespace:
        """The namespace the app serves (checked against the database as it started)."""
        if self.namespace is None:
            raise RuntimeError("the app has not started: its deployment is read from the database at startup")
        return self.namespace


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


def authenticate(
    services: Services, session: Session, credentials: HTTPAuthorizationCredentials | None, client: str
) -> Device:
    """The device the token names; 401 when there is none (its problem's `reason` says "revoked" for a token a
    revocation took away, which the farmer's app tells the farmer, else "unknown"), or 429 when this client address
    has sent too many bad tokens (a phone stuck with a revoked token, or someone guessing)."""
    device = device_for_token(session, credentials.credentials) if credentials else None
    if device is None:
        wait = services.limiter.client_wait_s(client, "auth-failure") if services.limiter is not None else None
        if wait is not None:
            raise too_many(wait, "Too many requests without a valid device token. Wait before sending again.")
        if credentials is not None and token_revoked(session, credentials.credentials):
            raise problems.ProblemException(status.HTTP_401_UNAUTHORIZED, text("app.revoked"), {"reason": "revoked"},
                                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
        raise problems.ProblemException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing or unknown device token. Send 'Authorization: Bearer <token>'.",
            {"reason": "unknown"},
            {"WWW-Authenticate": "Bearer"},
        )
    return device


def too_many(wait: float, detail: str) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(int(wait + 0.999))})


def client_address(request: Request) -> str:
    """Who is asking, as the socket (or, behind a trusted proxy, uvicorn's --proxy-headers) says."""
    return request.client.host if request.client is not None else "unknown"


def limit_rate(services: Services, device: Device, action: str) -> None:
    """429 with Retry-After when the device has used up its rate for `action`."""
    wait = services.limiter.device_wait_s(device.id or 0, action) if services.limiter is not None else None
    if wait is not None:
        raise too_many(wait, "Too many requests from this phone. Wait a little and send again.")


def get_device(request: Request, services: ServicesDep, session: SessionDep, credentials: Credentials) -> Device:
    return authenticate(services, session, credentials, client_address(request))


DeviceDep = Annotated[Device, Depends(get_device)]


def rate_limited(action: str) -> Callable[[Device, Services], Device]:
    """A dependency: the device, unless it has used up its rate for `action` (429 with Retry-After)."""

    def check(device: DeviceDep, services: ServicesDep) -> Device:
        limit_rate(services, device, action)
        return device

    return check


PollingDevice = Annotated[Device, Depends(rate_limited("poll"))]
UploadingDevice = Annotated[Device, Depends(rate_limited("upload"))]
FeedbackDevice = Annotated[Device, Depends(rate_limited("feedback"))]
ReportingDevice = Annotated[Device, Depends(rate_limited("events"))]


class ClientRateLimit:
    """ASGI middleware: every request counts against its client address's window (MHOGO_IP_RATE_LIMIT) before it
    reaches a route, so a flood from one address is turned away before any authentication or database work."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app, self.services = app, services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.services.limiter
        if scope["type"] == "http" and limiter is not None:
            client = scope.get("client")
            wait = await run_in_threadpool(limiter.client_wait_s, client[0] if client else "unknown", "request")
            if wait is not None:
                response = problems.problem(status.HTTP_429_TOO_MANY_REQUESTS, "Too many requests from this "
                                            "address. Wait a little and send again.",
                                            {"Retry-After": str(int(wait + 0.999))})  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

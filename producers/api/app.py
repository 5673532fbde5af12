"""The FastAPI application: `create_app()` wires settings, database, blob store and publisher into the routes.

uvicorn --factory producers.api.app:serve      (or: mhogo api)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from core.blobs import BlobStore
from core.celery_app import app as celery_app
from core.config import Settings, settings
from core.db import get_engine, init_db, open_database
from core.namespace import bind, resolve
from core.publisher import Publisher
from core.sweeper import sweep_once
from producers.api import dashboard, login, ops, pairing, phone_model, problems, review, tus, workbench
from producers.api.backlog import Backlog
from producers.api.deps import ClientRateLimit, Services
from producers.api.limits import BodySizeLimit
from producers.api.ratelimit import RateLimiter
from producers.api.routes import router
from producers.api.webapp import FarmerApp
from schemas.tasks import MAX_CLIENT_EVENTS, MAX_EVENTS_BODY_BYTES

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024
EVENTS_TOO_LARGE = (
    f"Send at most {MAX_EVENTS_BODY_BYTES // 1024} KiB of events (and at most {MAX_CLIENT_EVENTS} "
    "events) at once: split them over several requests."
)


def rates(config: Settings) -> dict[str, str]:
    """Each rate-limited action's window (producers.api.ratelimit)."""
    return {"upload": config.RATE_LIMIT, "feedback": config.RATE_LIMIT, "events": config.RATE_LIMIT,
            "poll": config.POLL_RATE_LIMIT, "request": config.IP_RATE_LIMIT,
            "auth-failure": config.AUTH_FAILURE_RATE_LIMIT}  # fmt: skip


def default_services(config: Settings) -> Services:
    """What `mhogo api` serves with: the database's deployment (MHOGO_DEPLOYMENT, when set, must be it) names the
    queues it sends to and the keys of its backlog and rate limits."""
    namespace = resolve(open_database(config.database_url), config.DEPLOYMENT)
    bind(celery_app, namespace)  # before the first message: the one Celery app, used here only to send by name
    client = redis.Redis.from_url(config.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return Services(
        settings=config,
        engine=get_engine(config.database_url),
        blobs=BlobStore(config.blob_dir),
        publisher=Publisher(celery_app),  # the one Celery app, used here only to send tasks by name
        backlog=Backlog(client, namespace),
        limiter=RateLimiter.from_rates(config.REDIS_URL, rates(config), namespace),
        namespace=namespace,
    )


def startup_sweep(services: Services) -> None:
    """Enqueue what an earlier run accepted but could not enqueue; in a thread, so a down broker never blocks."""

    def run() -> None:
        try:
            sweep_once(
                lambda: Session(services.engine, expire_on_commit=False),
                services.publisher,
                services.settings,
                services.blobs,
                photo_orphans=False,
            )
        except Exception:  # logged, and the periodic sweep will try again
            log.exception("startup sweep failed")

    threading.Thread(target=run, name="startup-sweep", daemon=True).start()


def create_app(services: Services | None = None, sweep_on_startup: bool = True) -> FastAPI:
    services = services or default_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Threads for blocking work (database, Redis, disk) per process. anyio's default of 40 threads fought over
        # one GIL: fewer threads gave more uploads a second (bench/upload_api.py).
        to_thread.current_default_thread_limiter().total_tokens = services.settings.API_THREADS
        init_db(services.engine)
        # The API of one deployment on another's database would accept photos its workers never see: refused.
        configured = services.namespace.deployment if services.namespace else services.settings.DEPLOYMENT
        services.namespace = resolve(services.engine, configured)
        if sweep_on_startup:
            startup_sweep(services)
        yield
        await to_thread.run_sync(services.intake.close)  # what is waiting is accepted before the process ends

    app = FastAPI(
        title="mhogo",
        summary="Cassava leaf disease diagnosis from farmers' photos",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = services
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=services.settings.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_EVENTS_BODY_BYTES, path="/v1/events", detail=EVENTS_TOO_LARGE)
    app.add_middleware(tus.TusResumableHeader)
    app.add_middleware(ClientRateLimit, services=services)
    app.include_router(router)
    app.include_router(tus.router)
    app.include_router(pairing.router)
    app.include_router(phone_model.router)
    app.include_router(ops.router)
    app.include_router(dashboard.router)
    app.include_router(login.router)
    app.include_router(review.router)
    app.include_router(workbench.router)
    app.add_exception_handler(ops.LoginFirst, ops.to_login)
    app.mount("/app", FarmerApp(services.settings.app_dir), name="app")
    app.add_api_route("/", to_the_app, methods=["GET", "HEAD"], include_in_schema=False)
    return app


async def to_the_app() -> RedirectResponse:
    """Whoever opens the server's address (a farmer typing it, an extension officer) lands in the farmer's app."""
    return RedirectResponse("/app/", status_code=303)


def serve() -> FastAPI:
    """The app as `mhogo api` serves it, in every uvicorn process: with `--workers N` each is a fresh interpreter
    whose logging nobody has set up, and its requests would otherwise go unlogged."""
    from core.logs import configure_logging

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="api")
    return create_app()

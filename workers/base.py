"""Bases of the mhogo tasks: storage handles made once per process; for the per-photo stages, the poison-message
guard and marking the job failed when its stage fails for good."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from sqlmodel import Session

from core import jobs
from core.blobs import BlobStore
from core.config import settings
from core.db import open_database
from core.deliveries import DeliveryCounter
from schemas.errors import TransientError

log = logging.getLogger(__name__)

# Retried with backoff; everything else fails the job at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    DatabaseOperationalError,
    IntegrityError,  # another process wrote the same row first (two workers seeding the champion): look again
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    KombuOperationalError,
)

RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": settings.TASK_MAX_RETRIES,
}


class MhogoTask(Task):  # type: ignore[misc]
    """Celery makes one instance per task per process, so whatever is cached here lives as long as the process."""

    _engine: Engine | None = None
    _blobs: BlobStore | None = None
    _deliveries: DeliveryCounter | None = None

    @property
    def engine(self) -> Engine:
        if MhogoTask._engine is None:
            MhogoTask._engine = open_database(settings.database_url)
        return MhogoTask._engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @property
    def blobs(self) -> BlobStore:
        if MhogoTask._blobs is None:
            MhogoTask._blobs = BlobStore(settings.blob_dir)
        return MhogoTask._blobs

    @property
    def deliveries(self) -> DeliveryCounter:
        if MhogoTask._deliveries is None:
            MhogoTask._deliveries = DeliveryCounter(redis.Redis.from_url(settings.REDIS_URL))
        return MhogoTask._deliveries


class PhotoTask(MhogoTask):
    """A per-photo task: its first argument names the job, which fails when the task fails for good."""

    def poisoned(self, job_id: str) -> bool:
        """True when this message came back more often than retries explain: fail the job and stop."""
        redeliveries = self.deliveries.record(self.request.id) - 1 - (self.request.retries or 0)
        if redeliveries < settings.MAX_DELIVERIES:
            return False
        error = f"{self.name} did not complete after {redeliveries + 1} deliveries"
        log.error("job failed", extra={"error": error})
        with self.session() as session:
            jobs.fail(session, job_id, error)
        return True

    def on_failure(
        self, exc: Exception, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        job_id = _job_id(args)
        if job_id is None:
            return
        # ERROR, not INFO: the one outcome an operator must see even with MHOGO_LOG_LEVEL=WARNING (`mhogo up`).
        log.error("job failed", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
        with self.session() as session:
            jobs.fail(session, job_id, f"{self.name} failed: {type(exc).__name__}")


def _job_id(args: tuple[Any, ...]) -> str | None:
    if not args:
        return None
    first = args[0]
    if isinstance(first, str):
        return first
    if isinstance(first, dict):
        job_id = first.get("job_id")
        return job_id if isinstance(job_id, str) else None
    return None

"""Bases of the mhogo tasks: storage handles made once per process, the deployment's namespace, refusing a task for
a job the database does not know; for the per-photo stages, the poison-message guard and marking the job failed
when its stage fails for good."""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Reject
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
from core.namespace import Namespace, bind, namespace_of, resolve
from schemas.errors import TransientError
from schemas.tables import utcnow

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

REFUSED_KEPT = 1000  # the namespace's `refused` list keeps the last this many tasks set aside

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
    def namespace(self) -> Namespace:
        """The deployment whose queues this process takes tasks from: a worker's app is bound as it starts, before
        it takes any (workers.app). A task applied in a process that is no worker binds the app to its database's."""
        namespace = namespace_of(self.app)
        if namespace is None:
            namespace = resolve(self.engine, settings.DEPLOYMENT)
            bind(self.app, namespace)
        return namespace

    @property
    def deliveries(self) -> DeliveryCounter:
        if MhogoTask._deliveries is None:
            client = redis.Redis.from_url(settings.REDIS_URL)
            MhogoTask._deliveries = DeliveryCounter(client, self.namespace.deliveries)
        return MhogoTask._deliveries

    def delivered(self) -> int:
        """Count this delivery of the message; how many there were, retries left out (each is a message again)."""
        return self.deliveries.record(self.request.id) - (self.request.retries or 0)

    def refuse(self, unknown: str, delivered: int) -> NoReturn:
        """A task for a job (or run) this deployment's database does not know is not done, and not acknowledged as
        done: given back to its queue, behind the messages waiting there, for another worker of the namespace (one
        on the right database, where two databases share a deployment id, as a copy restored beside the original
        would); after MHOGO_MAX_DELIVERIES deliveries, set aside in the namespace's `refused` list for an operator.
        Either way an error in the log, and the task counted as rejected, not succeeded."""
        extra = {"deployment": self.namespace.deployment, "delivered": delivered}
        if delivered < settings.MAX_DELIVERIES:
            log.error("%s is unknown to this deployment's database: task refused, back to the queue", unknown,
                      extra=extra)  # fmt: skip
            raise Reject(f"{unknown} is unknown to this database", requeue=True)
        log.error("%s is unknown to this deployment's database: task set aside after %d deliveries (%s)", unknown,
                  delivered, self.namespace.refused, extra=extra)  # fmt: skip
        record = {"at": utcnow().isoformat(), "task": self.name, "task_id": self.request.id, "unknown": unknown,
                  "args": list(self.request.args or ()), "refused_by": self.request.hostname}  # fmt: skip
        pipe = self.deliveries.redis.pipeline()
        pipe.lpush(self.namespace.refused, json.dumps(record, default=str))
        pipe.ltrim(self.namespace.refused, 0, REFUSED_KEPT - 1)
        pipe.execute()
        raise Reject(f"{unknown} is unknown to this database", requeue=False)


class PhotoTask(MhogoTask):
    """A per-photo task: its first argument names the job, which fails when the task fails for good."""

    def poisoned(self, job_id: str, delivered: int) -> bool:
        """True when this message came back more often than retries explain: fail the job and stop."""
        redeliveries = delivered - 1
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

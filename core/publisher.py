"""Sending tasks by name. The one place that knows which task a photo, a feedback or an event becomes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import BatchPublishError, OperationalError
from redis.exceptions import RedisError
from sqlmodel import Session

from core import jobs
from core.namespace import bound
from schemas.errors import BrokerUnavailable
from schemas.queues import TaskName
from schemas.tables import Job
from schemas.tasks import ClientEvents, FeedbackEvent

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, app: Celery) -> None:
        """`app` bound to the deployment's namespace (core.namespace.bind): unbound, its tasks would go to queues no
        worker of any deployment reads."""
        self.app = app
        self.namespace = bound(app)

    def publish_photo(self, job_id: str, blob_key: str) -> None:
        """One task per photo, named by its job: decode, gates, model and store run in one inference process."""
        self._send(lambda: self.app.send_task(TaskName.DIAGNOSE.value, args=(job_id, blob_key)))

    def publish_photos(self, photos: Sequence[tuple[str, str]]) -> bool:
        """`publish_photo` for each (job id, blob key), sent together in one Redis pipeline (kombu's publish batch).
        True: all were sent; False: the broker failed and none is sure to have gone (some may have: a job sent twice
        is done once, see core.jobs.claim)."""
        if not photos:
            return True
        try:
            with self.app.producer_or_acquire() as producer, producer.batch(max_size=max(1, len(photos))):
                for job_id, blob_key in photos:
                    self.app.send_task(TaskName.DIAGNOSE.value, args=(job_id, blob_key), producer=producer)
        except (OperationalError, BatchPublishError, RedisError, OSError) as exc:
            log.warning("broker unavailable for %d photos: %s", len(photos), exc)
            return False
        return True

    def publish_feedback(self, event: FeedbackEvent) -> None:
        self._send(lambda: self.app.send_task(TaskName.FEEDBACK.value, args=(event.model_dump(mode="json"),)))

    def publish_retrain(self, run_id: int) -> str:
        """Send the job of a retraining run (see core.triggers.fire); returns its task id."""
        result = self._send(lambda: self.app.send_task(TaskName.RETRAIN.value, args=(run_id,)))
        return str(result.id)

    def publish_client_events(self, events: ClientEvents) -> None:
        self._send(lambda: self.app.send_task(TaskName.CLIENT_EVENTS.value, args=(events.model_dump(mode="json"),)))

    def publish_task(self, task: str, args: Sequence[Any]) -> None:
        """A task by name with its JSON arguments, as a new message: one a worker set aside, sent again
        (core.strays)."""
        self._send(lambda: self.app.send_task(TaskName(task).value, args=tuple(args)))

    def ping(self) -> None:
        """Raise unless the broker answers."""
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    @staticmethod
    def _send(send: Callable[[], Any]) -> Any:
        try:
            return send()
        except (OperationalError, RedisError, OSError) as exc:
            raise BrokerUnavailable(f"broker unavailable: {exc}") from exc


def enqueue_photo(publisher: Publisher, session: Session, job: Job) -> bool:
    """Publish the job's task and record it. False when the broker is down: the job stays for the sweeper."""
    try:
        publisher.publish_photo(job.id, job.blob_key)
    except BrokerUnavailable as exc:
        log.warning("job %s left for the sweeper: %s", job.id, exc)
        return False
    jobs.record_enqueued(session, job.id)
    return True

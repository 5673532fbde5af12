"""Tasks of the events queue: feedback, events the phones report, and the housekeeping beat schedules: the
aggregation tick, the sweeper and retention. Kept off the inference path, so a burst of feedback never slows a
diagnosis, and run by a small process that loads no model. After each feedback event and each tick, the trigger rules
are checked; at most one retraining run is ever open (core.triggers)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import Counter
from typing import Any

from redis.exceptions import LockError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core import monitoring, retention, review, strays, telemetry, triggers
from core.config import settings
from core.feedback import feedback_event, record_feedback
from core.publisher import Publisher
from core.sweeper import sweep_once
from schemas.queues import TaskName
from schemas.tables import ClientEvent, utcnow
from schemas.tasks import ClientEvents
from workers.app import app
from workers.base import RETRY_POLICY, MhogoTask

log = logging.getLogger(__name__)

WORKER = f"aggregation worker on {socket.gethostname()}"


def check_triggers(task: MhogoTask) -> int | None:
    """Fire a retraining run if a rule holds; the run's id, or None."""
    namespace = task.namespace
    publisher = Publisher(app)
    with task.session() as session:
        run = triggers.maybe_retrain(session, task.deliveries.redis, namespace, publisher.publish_retrain, settings,
                                     WORKER)  # fmt: skip
        return run.id if run is not None else None


@app.task(name=TaskName.FEEDBACK, bind=True, base=MhogoTask, **RETRY_POLICY)
def feedback(self: MhogoTask, payload: dict[str, Any]) -> str:
    event = feedback_event(payload)
    with self.session() as session:
        try:
            stored = record_feedback(session, event)
        except LookupError:  # the API checked the job: not this database's feedback to store, nor to drop
            self.refuse(f"job {event.job_id} (feedback {event.event_id})", self.delivered())
    if stored:
        check_triggers(self)
    return "stored" if stored else "duplicate"


@app.task(name=TaskName.CLIENT_EVENTS, bind=True, base=MhogoTask, **RETRY_POLICY)
def client_events(self: MhogoTask, payload: dict[str, Any]) -> int:
    """Store what a phone reported, once per event id, and count it by kind."""
    batch = ClientEvents.model_validate(payload)  # kinds of the one list only: the counters' labels stay fixed
    received = utcnow()
    rows = [
        {"id": e.event_id, "device_id": batch.device_id, "kind": e.kind.value, "job_id": e.job_id, "at": e.at,
         "data": e.data, "received_at": received}
        for e in batch.events
    ]  # fmt: skip
    if not rows:
        return 0
    insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
    with self.session() as session:
        result = session.execute(insert(ClientEvent.__table__).values(rows).on_conflict_do_nothing())  # type: ignore[attr-defined]
        session.commit()
    kinds = Counter(e.kind.value for e in batch.events)
    counts = {("mhogo_client_events_total", frozenset({"kind": k}.items())): float(n) for k, n in kinds.items()}
    telemetry.add(self.deliveries.redis, self.namespace, counts)
    return int(getattr(result, "rowcount", 0) or 0)


@app.task(name=TaskName.AGGREGATE, bind=True, base=MhogoTask, **RETRY_POLICY)
def aggregate(self: MhogoTask) -> dict[str, Any]:
    """One tick of metrics (core.monitoring) and of the review queue (core.review.refresh: what finished or was
    disputed since the last tick), then the trigger rules. One tick at a time across all workers."""
    lock = self.deliveries.redis.lock(self.namespace.aggregate_lock, timeout=max(60, int(settings.METRICS_INTERVAL_S)),
                                      blocking=False)  # fmt: skip
    if not lock.acquire():
        return {"skipped": True}
    try:
        with self.session() as session:
            points = monitoring.tick(session, self.deliveries.redis, self.namespace, settings, utcnow())
            queued = review.refresh(session, settings)
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    return {"points": len(points), "review_items": queued, "retraining_run": check_triggers(self)}


@app.task(name=TaskName.SWEEP, bind=True, base=MhogoTask, **RETRY_POLICY)
def sweep(self: MhogoTask) -> dict[str, int]:
    """Enqueue every job the API could not enqueue, and re-enqueue those whose message was lost (core.sweeper); delete
    the orphan photos of one folder of the blob store (core.orphans); take back this deployment's messages waiting
    outside its queues (core.strays). One sweep at a time across all the deployment's workers."""
    lock = self.deliveries.redis.lock(self.namespace.sweep_lock, timeout=max(60, int(settings.SWEEP_INTERVAL_S * 2)),
                                      blocking=False)  # fmt: skip
    if not lock.acquire():
        return {"skipped": 1}
    try:
        publisher = Publisher(app)
        counts = sweep_once(self.session, publisher, settings, self.blobs)
        with self.session() as session:
            return counts | strays.take_back(session, self.deliveries.redis, self.namespace, publisher,
                                             settings.VISIBILITY_TIMEOUT_S)  # fmt: skip
    finally:
        with contextlib.suppress(LockError):  # it expired during a very long sweep: another may hold it now
            lock.release()


@app.task(name=TaskName.RETENTION, bind=True, base=MhogoTask, **RETRY_POLICY)
def apply_retention(self: MhogoTask) -> dict[str, int]:
    """Delete one batch of each kind of data past its time (core.retention). One pass at a time across all workers;
    a pass that filled a batch sends the next at once, so other tasks of the queue run in between."""
    client = self.deliveries.redis
    lock = client.lock(self.namespace.retention_lock, timeout=max(60, settings.TASK_TIME_LIMIT_S + 30), blocking=False)
    if not lock.acquire():
        return {"skipped": 1}
    try:
        outcome = retention.run_pass(self.session, self.blobs, settings, utcnow(), client, self.namespace)
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    if outcome.more:
        app.send_task(TaskName.RETENTION.value)
    return dict(outcome.counts)

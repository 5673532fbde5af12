"""The sweeper: enqueue every job the API could not enqueue (broker down), and re-enqueue jobs whose message went
missing; drop resumable uploads past their time, with their part files. Runs as a periodic task and once when the
API starts. Tasks are idempotent, so enqueuing twice is safe. The periodic task and `mhogo sweep` also delete the
orphan photos of one of the blob store's folders each time (core.orphans)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session

from core import jobs, orphans, triggers, uploads
from core.blobs import BlobStore
from core.config import Settings
from core.publisher import Publisher, enqueue_photo
from schemas.errors import BrokerUnavailable
from schemas.tables import RetrainStatus, utcnow

log = logging.getLogger(__name__)


def sweep_once(
    session_factory: Callable[[], Session],
    publisher: Publisher,
    settings: Settings,
    blobs: BlobStore,
    photo_orphans: bool = True,
) -> dict[str, int]:
    counts = {"enqueued": 0, "failed": 0, "unreachable": 0, "uploads_expired": 0, "runs_resent": 0, "runs_failed": 0}
    with session_factory() as session:
        candidates = jobs.jobs_to_sweep(
            session,
            utcnow(),
            timedelta(seconds=settings.SWEEP_RECEIVED_AFTER_S),
            timedelta(seconds=settings.SWEEP_STALE_AFTER_S),
        )
        for job in candidates:
            if job.enqueue_count >= settings.SWEEP_MAX_ENQUEUES:
                jobs.fail(session, job.id, f"not processed after {job.enqueue_count} attempts")
                counts["failed"] += 1
            elif enqueue_photo(publisher, session, job):
                counts["enqueued"] += 1
            else:
                counts["unreachable"] += 1
                break  # the broker is down: the next sweep tries again
        counts["uploads_expired"] = uploads.remove_expired(session, blobs)
        counts |= sweep_runs(session, publisher, settings)
    if photo_orphans:  # not in the API's sweep at start: only the deployment's one sweep at a time deletes files
        counts |= sweep_orphans(session_factory, blobs, settings)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def sweep_runs(session: Session, publisher: Publisher, settings: Settings) -> dict[str, int]:
    """Retraining runs whose message the broker lost (Redis restarted without its data): a queued one is sent again,
    at most MHOGO_SWEEP_MAX_ENQUEUES times, then failed; a running one past its time limit is failed. Either way no
    run stays open for ever, holding back every rule (`mhogo retrain` would answer "a run is open already")."""
    now = utcnow()
    queued, running = triggers.stale_runs(session, now, timedelta(seconds=settings.SWEEP_RUN_RESEND_AFTER_S),
                                          timedelta(seconds=settings.RETRAIN_TIME_LIMIT_S + 60))  # fmt: skip
    counts = {"runs_resent": 0, "runs_failed": 0}
    for run in running:
        triggers.finish_run(session, run, RetrainStatus.FAILED, "still running after its time limit: its worker died")
        counts["runs_failed"] += 1
    for run in queued:
        if run.enqueue_count >= settings.SWEEP_MAX_ENQUEUES:
            triggers.finish_run(session, run, RetrainStatus.FAILED,
                                f"not started after {run.enqueue_count} sends of its message")  # fmt: skip
            counts["runs_failed"] += 1
            continue
        try:
            triggers.send(session, run, publisher.publish_retrain, now)
        except BrokerUnavailable:
            break  # the broker is down: the next sweep tries again
        log.warning("retraining run %s was not started: its message sent again", run.id)
        counts["runs_resent"] += 1
    return counts


def sweep_orphans(session_factory: Callable[[], Session], blobs: BlobStore, settings: Settings) -> dict[str, int]:
    """The orphan photos of this sweep's folder of the blob store; a folder that cannot be read waits for its turn."""
    now = utcnow()
    shard = orphans.shard_at(now, settings.SWEEP_INTERVAL_S)
    try:
        with session_factory() as session:
            return dict(orphans.sweep_orphans(session, blobs, shard, settings.ORPHAN_GRACE_S, now))
    except OSError as exc:
        log.warning("orphan sweep of folder %02x failed: %s", shard, exc)
        return {"errors": 1}

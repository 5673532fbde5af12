"""The sweeper: enqueue every job the API could not enqueue (broker down), and re-enqueue jobs whose message went
missing. Runs as a periodic task and once when the API starts. Tasks are idempotent, so enqueuing twice is safe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session

from core import jobs, uploads
from core.config import Settings
from core.publisher import Publisher, enqueue_photo
from schemas.tables import utcnow

log = logging.getLogger(__name__)


def sweep_once(session_factory: Callable[[], Session], publisher: Publisher, settings: Settings) -> dict[str, int]:
    counts = {"enqueued": 0, "failed": 0, "unreachable": 0, "uploads_expired": 0}
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
        counts["uploads_expired"] = uploads.remove_expired(session)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts

"""Task of the photos queue: the sweeper, which enqueues every photo job the API could not enqueue and re-enqueues
those whose message was lost. The photos themselves are diagnosed by one task each on the inference queue
(workers/inference.py). No model here: these processes stay small."""

from __future__ import annotations

import contextlib

from redis.exceptions import LockError

from core.config import settings
from producers.publisher import Publisher
from producers.sweeper import sweep_once
from schemas.queues import TaskName
from workers.app import app
from workers.base import RETRY_POLICY, MhogoTask

SWEEP_LOCK = "mhogo:sweep:lock"


@app.task(name=TaskName.SWEEP, bind=True, base=MhogoTask, **RETRY_POLICY)
def sweep(self: MhogoTask) -> dict[str, int]:
    """Enqueue every job the API could not enqueue, and re-enqueue those whose message was lost."""
    lock = self.deliveries.redis.lock(SWEEP_LOCK, timeout=max(60, int(settings.SWEEP_INTERVAL_S * 2)), blocking=False)
    if not lock.acquire():
        return {"skipped": 1}
    try:
        return sweep_once(self.session, Publisher(app), settings)
    finally:
        with contextlib.suppress(LockError):  # it expired during a very long sweep: another may hold it now
            lock.release()

"""Backpressure: when the photo queues hold more than MHOGO_MAX_QUEUE_DEPTH messages, new uploads are refused with
503 and Retry-After before their bytes are read, instead of piling up without bound. The phone keeps the photo and
tries later (producers/phone.py). Nothing accepted is refused: replays of a known key are answered as before."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis

from core.namespace import Namespace
from schemas.queues import QueueName

log = logging.getLogger(__name__)

PHOTO_QUEUES = (QueueName.INFERENCE.value,)


@dataclass
class Backlog:
    """Messages waiting in the deployment's photo queues, read from Redis at most once per `every_s` per process."""

    client: redis.Redis
    namespace: Namespace
    every_s: float = 1.0
    _depth: int | None = None
    _read_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def depth(self) -> int | None:
        """None when Redis does not answer: the upload goes on and waits for the sweeper, as in a broker outage."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.every_s:
                self._read_at = now
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for queue in PHOTO_QUEUES:
                        pipe.llen(self.namespace.queue(queue))
                    self._depth = int(sum(pipe.execute()))
                except redis.RedisError as exc:
                    log.warning("queue depth unknown: %s", exc)
                    self._depth = None
            return self._depth


def retry_after_s(depth: int, limit: int, drain_per_s: float) -> int:
    """Roughly how long until the queue is back under its limit, at the rate the workers drain it (at least 5 s,
    at most 10 min), so thousands of phones do not all come back in the same second."""
    return int(min(600.0, max(5.0, (depth - limit) / max(drain_per_s, 0.1) + 5.0)))

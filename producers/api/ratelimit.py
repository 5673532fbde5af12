"""Per-device rate limits: a phone stuck in a retry loop, or a stolen token, cannot flood the queues. A moving window
kept in Redis (the `limits` library), so every API process on every machine counts the same device together.
Over the limit: 429 with Retry-After. When Redis does not answer, nothing is refused for it: an upload that can be
made durable is accepted, as during a broker outage."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)


@dataclass
class DeviceLimiter:
    storage: Storage
    limit: RateLimitItem

    @classmethod
    def from_settings(cls, redis_url: str, rate: str) -> DeviceLimiter | None:
        """`rate` in the `limits` notation ("120/minute", "2000/day"); empty: no limit."""
        if not rate:
            return None
        storage = storage_from_string(redis_url)
        assert isinstance(storage, Storage)  # a redis:// URL gives the synchronous storage
        return cls(storage, parse(rate))

    def wait_s(self, device_id: int, action: str) -> float | None:
        """Record one request; None when it is within the limit, else the seconds until one is allowed."""
        limiter = MovingWindowRateLimiter(self.storage)
        try:
            if limiter.hit(self.limit, "mhogo-device", str(device_id), action):
                return None
            reset = limiter.get_window_stats(self.limit, "mhogo-device", str(device_id), action).reset_time
        except Exception as exc:  # the storage's errors vary with its driver; none of them may refuse an upload
            log.warning("rate limit not checked: %s", exc)
            return None
        return max(1.0, reset - time.time())

"""Rate limits: a phone stuck in a retry loop, a stolen token or a flood from one address cannot tire the API or fill
the queues. Moving windows kept in Redis (the `limits` library), so every API process on every machine counts
together. What is limited, each with its own window:

- per device and action: uploads, feedback and events (MHOGO_RATE_LIMIT each), and the polling a phone does between
  them, reading a job or an upload's offset and sending its chunks (MHOGO_POLL_RATE_LIMIT);
- per client address, before any authentication: every request (MHOGO_IP_RATE_LIMIT: generous, since a mobile
  carrier puts thousands of phones behind one address), and requests whose token is missing or unknown
  (MHOGO_AUTH_FAILURE_RATE_LIMIT: a client that keeps sending a bad token gets 429 instead of 401).

Keys live under the deployment's namespace: device ids start at 1 in every database, so deployments sharing a Redis
would otherwise spend each other's phones' allowance. Over a limit: 429 with Retry-After. When Redis does not
answer, nothing is refused for it: an upload that can be made durable is accepted, as during a broker outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.namespace import Namespace

log = logging.getLogger(__name__)

DEVICE_ACTIONS = ("upload", "feedback", "events", "poll")
CLIENT_ACTIONS = ("request", "auth-failure")


@dataclass
class RateLimiter:
    storage: Storage
    limits: Mapping[str, RateLimitItem]  # by action; an action without one is not limited

    @classmethod
    def from_rates(cls, redis_url: str, rates: Mapping[str, str], namespace: Namespace) -> RateLimiter | None:
        """`rates` by action, in the `limits` notation ("120/minute", "2000/day"; empty: no limit)."""
        limits = {action: parse(rate) for action, rate in rates.items() if rate}
        if not limits:
            return None
        storage = storage_from_string(redis_url, key_prefix=namespace.rate_limits)
        assert isinstance(storage, Storage)  # a redis:// URL gives the synchronous storage
        return cls(storage, limits)

    def device_wait_s(self, device_id: int, action: str) -> float | None:
        return self._wait_s(action, "mhogo-device", str(device_id))

    def client_wait_s(self, address: str, action: str) -> float | None:
        return self._wait_s(action, "mhogo-client", address)

    def _wait_s(self, action: str, *keys: str) -> float | None:
        """Record one request; None when it is within the limit, else the seconds until one is allowed."""
        limit = self.limits.get(action)
        if limit is None:
            return None
        limiter = MovingWindowRateLimiter(self.storage)
        try:
            if limiter.hit(limit, *keys, action):
                return None
            reset = limiter.get_window_stats(limit, *keys, action).reset_time
        except Exception as exc:  # the storage's errors vary with its driver; none of them may refuse an upload
            log.warning("rate limit not checked: %s", exc)
            return None
        return max(1.0, reset - time.time())

"""Uploads in flight per device, in one API process: a phone (or a stolen token) that opens many uploads at once
holds at most MHOGO_MAX_UPLOADS_IN_FLIGHT of them, from its body arriving to its answer; one more gets 429 with
Retry-After. The rate limits (producers.api.ratelimit) count requests over a window; this counts what a device holds
at once: bodies in memory, photos waiting to be checked and stored."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException, status

RETRY_AFTER_S = 5  # an upload on a good link is answered in a fraction of a second; on 2G, in a few seconds


class InFlight:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[int] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, device_id: int) -> Iterator[None]:
        """One of the device's places for the time of the block; 429 when it has none left."""
        with self._lock:
            if self._held[device_id] >= self.limit:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"This phone is already sending {self.limit} photos. Wait for their answers, then send this one.",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            self._held[device_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[device_id] -= 1
                if not self._held[device_id]:
                    del self._held[device_id]

    def held(self, device_id: int) -> int:
        with self._lock:
            return self._held[device_id]

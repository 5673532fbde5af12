"""Where a photo's job stands, from upload to result: the one list of statuses every side reads."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    RECEIVED = "received"  # photo stored and row committed; not yet on the queue
    QUEUED = "queued"
    PROCESSING = "processing"
    REJECTED = "rejected"
    CLASSIFIED = "classified"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.REJECTED, JobStatus.CLASSIFIED, JobStatus.FAILED})

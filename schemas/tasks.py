"""Payloads of the Celery tasks, as the API sends them: ids, keys and small figures, never image bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas.tables import FeedbackSource


class FeedbackEvent(BaseModel):
    event_id: str
    job_id: str
    label: str
    source: FeedbackSource
    comment: str | None = None
    created_at: datetime


class ClientEventIn(BaseModel):
    """Something the phone app reports: an upload retried, an answer shown offline, an error it met."""

    event_id: str = Field(min_length=8, max_length=64, description="Made once on the phone; the same on every retry")
    kind: str = Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_.]*$")
    at: datetime
    job_id: str | None = Field(default=None, max_length=32)
    data: dict[str, Any] = Field(default_factory=dict)


class ClientEvents(BaseModel):
    device_id: int
    events: list[ClientEventIn]

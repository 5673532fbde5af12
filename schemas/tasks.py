"""Payloads of the Celery tasks, as the API sends them: ids, keys and small figures, never image bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from schemas.tables import FeedbackSource


class FeedbackEvent(BaseModel):
    """A label on a photo, with who gave it as the sender's credential says: a farmer's carries the device whose
    token sent it, an agronomist's the agronomist's identity. (A message from before devices were recorded carries
    no device: the worker takes the job's, the only device the API let speak about it.)"""

    event_id: str
    job_id: str
    label: str
    source: FeedbackSource
    device_id: int | None = None
    agronomist: str | None = Field(default=None, min_length=1, max_length=200)
    comment: str | None = None
    created_at: datetime

    @model_validator(mode="after")
    def _identity_fits_the_source(self) -> FeedbackEvent:
        if self.source == FeedbackSource.AGRONOMIST and (self.agronomist is None or self.device_id is not None):
            raise ValueError("an agronomist's label carries the agronomist's identity, and no device")
        if self.source == FeedbackSource.FARMER and self.agronomist is not None:
            raise ValueError("a farmer's label carries no agronomist")
        return self


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

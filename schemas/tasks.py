"""Payloads of the Celery tasks, as the API sends them: ids, keys and small figures, never image bytes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

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


class ClientEventKind(StrEnum):
    """What a phone app may report, the one list: each is a label of `mhogo_client_events_total`, so the number of
    Prometheus series stays fixed whatever the phones send. A kind outside it is refused (422, naming these)."""

    UPLOAD_RETRIED = "upload_retried"  # an upload (or a chunk of one) cut, refused or timed out: tried again
    UPLOAD_RESUMED = "upload_resumed"  # a resumable upload taken up where the server stood (HEAD), after a cut
    UPLOAD_REFUSED = "upload_refused"  # the server's final word on a photo (a 4xx): kept, never sent again
    TOLD_TO_WAIT = "told_to_wait"  # a 429 or 503 with Retry-After held back uploads or feedback
    FEEDBACK_RETRIED = "feedback_retried"  # feedback that did not get through: sent again, same Idempotency-Key
    OFFLINE_ANSWER_SHOWN = "offline_answer_shown"  # the phone build's provisional answer, shown at once
    OFFLINE_ANSWER_REPLACED = "offline_answer_replaced"  # the server's answer came and replaced it
    APP_ERROR = "app_error"  # something else the app met: a crash, the camera, a full disk


# The bounds of one request of events: a phone sends its backlog in batches within them.
MAX_CLIENT_EVENTS = 500
MAX_EVENTS_BODY_BYTES = 256 * 1024  # about 500 events of 500 bytes; larger bodies get 413 while they stream in
MAX_EVENT_DATA_ITEMS = 16

# `data` is flat: short lower-case keys, each with a number, a short text, true/false or null; never an object or a
# list, so no event carries a document of its own.
EventDataKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
EventDataValue = Annotated[str, StringConstraints(max_length=200)] | bool | int | float | None


class ClientEventIn(BaseModel):
    """Something the phone app reports: an upload retried, an answer shown offline, an error it met."""

    event_id: str = Field(min_length=8, max_length=64, description="Made once on the phone; the same on every retry")
    kind: ClientEventKind
    at: datetime = Field(description="When it happened, by the phone's clock")
    job_id: str | None = Field(default=None, max_length=32)
    data: dict[EventDataKey, EventDataValue] = Field(
        default_factory=dict,
        max_length=MAX_EVENT_DATA_ITEMS,
        json_schema_extra={"additionalProperties": False},  # the schema refuses other keys, as validation does
        description=f"At most {MAX_EVENT_DATA_ITEMS} flat pairs: a key of up to 40 characters (a-z, 0-9, _) and a "
        "number, a text of up to 200 characters, true, false or null",
    )


class ClientEvents(BaseModel):
    device_id: int
    events: list[ClientEventIn]

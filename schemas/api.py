"""Bodies of the HTTP API, shared by the server, the phone client and the demo."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.labels import Label
from schemas.reasons import RejectReason
from schemas.statuses import JobStatus
from schemas.tables import FeedbackSource


class PhotoAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class Diagnosis(BaseModel):
    label_id: int = Field(description="Class id in the Kaggle 2020 label map (0..4)")
    label: Label
    name: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    advice: str


class Rejection(BaseModel):
    reason: RejectReason
    message: str


class JobView(BaseModel):
    job_id: str
    idempotency_key: str = Field(description="The key the photo was uploaded with: a reinstalled app matches its "
                                 "outbox to its jobs by it")  # fmt: skip
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    result: Diagnosis | None = None
    rejection: Rejection | None = None
    error: str | None = None
    timings_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Milliseconds of work in each stage (decode; prepare, with the quality gate; model, with the leaf "
        "gate) and from upload to result (end_to_end, queue waits included)",
    )


class JobPage(BaseModel):
    """A page of the device's own jobs, newest first."""

    jobs: list[JobView]
    next: str | None = Field(description="Send it as `before` for the next (older) page; null on the last page")


class PairingIn(BaseModel):
    code: str = Field(min_length=1, max_length=100, description="The `pair` of the pairing link's fragment")


class Paired(BaseModel):
    token: str = Field(description="The device's bearer token from now on; the phone paired before loses its own")
    device_id: int
    device_name: str


class PhoneModel(BaseModel):
    """The on-device model: the champion's phone build, as the JSON `mhogo export` writes beside it (input, outputs,
    classes, every preprocessing step and threshold; more members than those listed), and where to fetch it."""

    model_config = ConfigDict(extra="allow")

    model_version: str
    sha256: str = Field(description="Of the .onnx file: check it after the download")
    precision: str
    classes: list[str]
    size_bytes: int
    url: str = Field(description="Where its bytes are: /v1/model/<sha256>.onnx")


class FeedbackIn(BaseModel):
    label: Label
    source: FeedbackSource | None = Field(
        default=None,
        description="Optional, and only ever 'farmer': who speaks is decided by the credential, and a device's word "
        "is a farmer's. 'agronomist' is refused (403): agronomists' labels come from their own accounts.",
    )
    comment: str | None = Field(default=None, max_length=1000)


class FeedbackAccepted(BaseModel):
    event_id: str
    status: str = "queued"


class FieldProblem(BaseModel):
    field: str = Field(description="Where: 'header idempotency-key', 'body label', ...")
    message: str


class Problem(BaseModel):
    """Every error body (RFC 9457 problem details, application/problem+json): `detail` says what was wrong and what
    to do; `errors`, for a request that does not fit the schema, which fields and why."""

    type: str = "about:blank"
    title: str = Field(description="The HTTP status's phrase")
    status: int
    detail: str
    errors: list[FieldProblem] | None = None
    reason: str | None = Field(
        default=None,
        description="On a 401: 'revoked' when the device's token was revoked (the app says so and asks for a new "
        "link), 'unknown' for a missing or unknown token",
    )


class Health(BaseModel):
    status: str
    checks: dict[str, str]
    # Free space where photos are written ("blob_store") and, for SQLite, the database ("database"), in bytes.
    free_bytes: dict[str, int] = Field(default_factory=dict)

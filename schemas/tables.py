"""Database tables (SQLModel). The same models serve SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, String, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from schemas.reasons import RejectReason
from schemas.statuses import JobStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class FeedbackSource(StrEnum):
    FARMER = "farmer"
    AGRONOMIST = "agronomist"


class Device(SQLModel, table=True):
    __tablename__ = "devices"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    token_hash: str = Field(max_length=64, unique=True, index=True)  # sha256 hex of the bearer token
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeviceRevocation(SQLModel, table=True):
    """A device whose token was revoked (lost or stolen phone): who did it, when and why. Its token no longer opens
    anything (the device's stored hash was replaced by one no token has); the hash it had is kept here, so that the
    phone still holding that token is told it was revoked rather than that the token is unknown."""

    __tablename__ = "device_revocations"

    device_id: int = Field(foreign_key="devices.id", primary_key=True)
    revoked_by: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=500)
    revoked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # sha256 hex of the token that was revoked; NULL for revocations made before it was kept (0006_pairing)
    token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)


class PairingCode(SQLModel, table=True):
    """A one-time code that pairs the farmer's app with a device (`mhogo devices add NAME --link`, `mhogo devices
    link ID`): the link's `#pair=<code>`. Only its sha256 is stored. Redeemed once, before `expires_at`, and only
    while the device is not revoked: redeeming gives the device a new token and sets `used_at`, in one conditional
    UPDATE, so of two phones opening one link exactly one is paired."""

    __tablename__ = "pairing_codes"

    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="devices.id", index=True)
    code_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Job(SQLModel, table=True):
    """One photo a device sent, from upload to diagnosis. The idempotency key is unique per device."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("device_id", "idempotency_key", name="uq_jobs_device_key"),
        # A device's jobs newest first, a page at a time (GET /v1/jobs), and every lookup by device alone.
        Index("ix_jobs_device_created", "device_id", "created_at", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    device_id: int = Field(foreign_key="devices.id")
    idempotency_key: str = Field(max_length=255)
    content_sha256: str = Field(max_length=64)
    blob_key: str = Field(max_length=200, index=True)  # which jobs keep a photo file (core.orphans, core.retention)
    content_type: str = Field(max_length=50)
    size_bytes: int
    status: JobStatus = Field(default=JobStatus.RECEIVED, sa_column=Column(String(20), index=True, nullable=False))
    enqueue_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    label: str | None = Field(default=None, max_length=20)
    confidence: float | None = None
    probabilities: dict[str, float] | None = Field(default=None, sa_type=JSON)
    model_version: str | None = Field(default=None, max_length=100)
    reason_code: RejectReason | None = Field(default=None, sa_column=Column(String(40)))  # when rejected
    reason: str | None = Field(default=None, max_length=500)
    input_stats: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    timings_ms: dict[str, float] | None = Field(default=None, sa_type=JSON)
    # When retention deleted the photo (core.retention): the row stays a while, its diagnosis readable, as a tombstone.
    photo_deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Upload(SQLModel, table=True):
    """A resumable upload (tus 1.0) of one photo: how long it is, how much has arrived, and, once complete, its job.

    The key is the photo's Idempotency-Key, unique per device like a job's, so a creation request retried after its
    answer was lost finds this upload again instead of starting a second one."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("device_id", "idempotency_key", name="uq_uploads_device_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    device_id: int = Field(foreign_key="devices.id", index=True)
    idempotency_key: str = Field(max_length=255)
    length: int
    received: int = 0  # the tus Upload-Offset: bytes stored, in whole chunks
    meta: dict[str, str] = Field(default_factory=dict, sa_type=JSON)  # the Upload-Metadata pairs, decoded
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    job_id: str | None = Field(default=None, max_length=32)  # set when the last byte arrived and the job exists


class UploadChunk(SQLModel, table=True):
    """One PATCH's bytes of an upload (or as many as arrived before its connection dropped), kept until the upload
    completes: in a file of the blob store under `key`. (upload, start) is the primary key, so of two PATCH requests
    racing for the same offset exactly one is stored, on SQLite and PostgreSQL alike."""

    __tablename__ = "upload_chunks"

    upload_id: str = Field(foreign_key="uploads.id", primary_key=True, max_length=32)
    start: int = Field(primary_key=True)
    size_bytes: int
    key: str | None = Field(default=None, max_length=200, unique=True, index=True)  # its file: parts/ab/ab...ef.part
    data: bytes | None = Field(default=None, sa_type=LargeBinary)  # the bytes themselves, of chunks before 0004 only


class Feedback(SQLModel, table=True):
    """A farmer's or agronomist's word on one job. The id is the event id, so a redelivered event is stored once.

    Who said it comes from the credential it came with, never from the request: a device's word is a farmer's and
    keeps the device (farmers agree only across devices, and one device's share of any figure is capped); an
    agronomist's label keeps the agronomist's identity."""

    __tablename__ = "feedback"

    id: str = Field(primary_key=True, max_length=32)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=32)
    label: str = Field(max_length=20)
    source: FeedbackSource = Field(sa_column=Column(String(20), nullable=False))
    device_id: int | None = Field(default=None, foreign_key="devices.id", index=True)  # a farmer's: whose phone
    agronomist: str | None = Field(default=None, max_length=200)  # an agronomist's label: who gave it
    comment: str | None = Field(default=None, max_length=1000)
    predicted_label: str | None = Field(default=None, max_length=20)
    model_version: str | None = Field(default=None, max_length=100)
    agrees: bool | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FeedbackKey(SQLModel, table=True):
    """An Idempotency-Key feedback on a job came with, bound to what that feedback said (a hash of its label,
    source and comment): the same key with the same feedback is a retry, the same event; with other feedback it
    is refused, instead of the second label being dropped as a duplicate of the first."""

    __tablename__ = "feedback_keys"

    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32)
    idempotency_key: str = Field(primary_key=True, max_length=255)
    event_id: str = Field(max_length=32)
    fingerprint: str = Field(max_length=64)  # sha256 hex of the feedback as the server took it
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ModelFeedbackCount(SQLModel, table=True):
    """Running counts of confirmed and corrected predictions, per model version and feedback source."""

    __tablename__ = "model_feedback_counts"

    model_version: str = Field(primary_key=True, max_length=100)
    source: FeedbackSource = Field(sa_column=Column(String(20), primary_key=True))
    confirmed: int = 0
    corrected: int = 0


class ModelAliasName(StrEnum):
    CHAMPION = "champion"  # what the inference workers serve
    CHALLENGER = "challenger"  # the candidate waiting to be compared and promoted


class ModelVersion(SQLModel, table=True):
    """Every model that was ever registered, traceable to the data and code that made it."""

    __tablename__ = "model_versions"

    version: str = Field(primary_key=True, max_length=100)
    sha256: str = Field(max_length=64, index=True)  # of the checkpoint file
    blob_key: str = Field(max_length=200)  # the checkpoint in the blob store, shared by every machine
    parent_version: str | None = Field(default=None, foreign_key="model_versions.version", max_length=100)
    dataset_version: str | None = Field(default=None, max_length=100)
    code_version: str | None = Field(default=None, max_length=100)
    made_by: str = Field(max_length=200)  # a person, or the retraining trigger that asked for it
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    size_bytes: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # A challenger never promoted loses its checkpoint and builds to retention (core.retention); its row stays, the
    # record of what was tried and how it did. Registering the same file again brings the artifact back.
    artifact_deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ModelAlias(SQLModel, table=True):
    __tablename__ = "model_aliases"

    alias: ModelAliasName = Field(sa_column=Column(String(20), primary_key=True))
    version: str = Field(foreign_key="model_versions.version", max_length=100)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AliasChange(SQLModel, table=True):
    """The history of every alias move: who, when, why, and what it replaced (rollback walks it back)."""

    __tablename__ = "model_alias_changes"

    id: int | None = Field(default=None, primary_key=True)
    alias: ModelAliasName = Field(sa_column=Column(String(20), nullable=False, index=True))
    version: str = Field(foreign_key="model_versions.version", max_length=100)
    previous_version: str | None = Field(default=None, max_length=100)
    changed_by: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=500)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClientEvent(SQLModel, table=True):
    """Something the phone app reports (an upload retried, an offline answer shown): counted, kept for a while."""

    __tablename__ = "client_events"

    id: str = Field(primary_key=True, max_length=64)  # the phone's event id: a redelivered event is stored once
    device_id: int = Field(foreign_key="devices.id", index=True)
    kind: str = Field(max_length=60)
    job_id: str | None = Field(default=None, max_length=32)
    at: datetime = Field(sa_type=UTCDateTime)  # by the phone's clock, which may be anything
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)  # by ours: retention's


class MetricPoint(SQLModel, table=True):
    """One figure of one aggregation tick: the time series the dashboard draws and the trigger rules read.

    `name` is what is measured (accuracy, drift_psi, latency_ms, ...), `key` which part of it (a feedback source, an
    image statistic, a stage and percentile, a queue, a reason code), `model_version` whose figure it is, if any."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_name_at", "name", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    name: str = Field(max_length=40)
    key: str = Field(default="", max_length=80)
    model_version: str | None = Field(default=None, max_length=100)
    value: float


class RetrainStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PROMOTED = "promoted"  # the challenger won and serves
    KEPT = "kept"  # the challenger did not win, or promotion is paused: it stays challenger, with the reason
    FAILED = "failed"
    CANCELLED = "cancelled"  # an operator stopped it (`mhogo retrain cancel`): no decision is taken

    @property
    def open(self) -> bool:
        return self in (RetrainStatus.QUEUED, RetrainStatus.RUNNING)


OPEN_SLOT = "open"


class RetrainRun(SQLModel, table=True):
    """One retraining job: the rule that fired it with its figures, the dataset it built, the evaluation of the
    challenger against the champion, and the decision. `open_slot` is "open" while the run is queued or running and
    NULL after: its unique index lets the database itself refuse a second open run, whatever races above it."""

    __tablename__ = "retrain_runs"

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=60)
    figures: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    fired_by: str = Field(max_length=200)  # the aggregation worker or the operator
    fired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    status: RetrainStatus = Field(default=RetrainStatus.QUEUED, sa_column=Column(String(20), nullable=False))
    open_slot: str | None = Field(default=OPEN_SLOT, max_length=10, unique=True)
    task_id: str | None = Field(default=None, max_length=64)
    enqueue_count: int = 0  # its message sent this many times: the sweeper sends it again if the broker lost it
    enqueued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    champion_version: str | None = Field(default=None, max_length=100)
    challenger_version: str | None = Field(default=None, max_length=100)
    dataset_version: str | None = Field(default=None, max_length=100)
    dataset: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # what went in and what was left out, why
    evaluation: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    decision: str | None = Field(default=None, max_length=500)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SwitchName(StrEnum):
    """The switches an operator flips at run time (`mhogo promotion pause`, `mhogo retraining pause`)."""

    AUTO_PROMOTION = "auto_promotion"  # a retraining run may promote the challenger it trained
    AUTO_RETRAIN = "auto_retrain"  # the trigger rules may fire a retraining run


class OperatorSwitch(SQLModel, table=True):
    """A switch an operator flips at run time, e.g. `auto_promotion` off; every worker reads it from here."""

    __tablename__ = "operator_switches"

    name: str = Field(primary_key=True, max_length=40)
    enabled: bool
    changed_by: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=500)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Deployment(SQLModel, table=True):
    """The deployment this database belongs to: one row, made once by the migration that made the table. Its id
    names every key the deployment keeps in Redis (core.namespace), so two deployments on one Redis never take each
    other's tasks; every machine of one deployment shares it by sharing the database."""

    __tablename__ = "deployment"

    id: str = Field(primary_key=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Role(StrEnum):
    """What a person may do, decided by who logged in: agronomists label and review photos; operators run the
    deployment (the dashboard, agreement figures, datasets, retraining and promotion). A device is neither."""

    AGRONOMIST = "agronomist"
    OPERATOR = "operator"


class User(SQLModel, table=True):
    """A person with a login (`mhogo users add NAME --role ...`). Only the password's argon2 hash is kept; repeated
    failures lock the login for a while (`locked_until`)."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True)
    role: Role = Field(sa_column=Column(String(20), nullable=False))
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # `mhogo users disable`: nothing opens
    failed_logins: int = 0  # in a row; a successful login sets it back to 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserToken(SQLModel, table=True):
    """An API token of a person, for scripts (`mhogo users token NAME`): only its sha256 is kept."""

    __tablename__ = "user_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserSession(SQLModel, table=True):
    """A browser's login: the cookie holds a random id of which only the sha256 is kept here, with the CSRF token
    every state-changing request from that browser must carry. Logout or expiry ends it."""

    __tablename__ = "user_sessions"

    id_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LabelSource(StrEnum):
    FARMER = "farmer"  # a device's feedback
    AGRONOMIST = "agronomist"  # a person with the agronomist role, through feedback or the review queue
    CURATED = "curated"  # the base data set's folders (`mhogo dataset import`)


class ReviewStatus(StrEnum):
    OPEN = "open"  # waiting for its labels
    ADJUDICATION = "adjudication"  # two agronomists disagreed: a third decides
    DONE = "done"


class ReviewItem(SQLModel, table=True):
    """One photo in the agronomists' review queue, with why it is there (`reasons`: a list of {code, detail}) and
    how urgent (`priority`, higher first). One item per photo (by content hash). `labels_needed` is 2 for the share
    that two agronomists label independently. An item handed out is leased to that agronomist for a while, so two
    agronomists are not given the same photo at once."""

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_queue", "status", "priority"),)

    id: int | None = Field(default=None, primary_key=True)
    photo_sha256: str = Field(max_length=64, unique=True, index=True)
    job_id: str | None = Field(default=None, max_length=32, index=True)  # no foreign key: retention deletes jobs
    blob_key: str = Field(max_length=200)  # the photo in the blob store
    reasons: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    priority: float = 0.0
    labels_needed: int = 1
    status: ReviewStatus = Field(default=ReviewStatus.OPEN, sa_column=Column(String(20), nullable=False))
    final_label: str | None = Field(default=None, max_length=20)
    leased_by: int | None = Field(default=None, foreign_key="users.id")
    leased_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PhotoLabel(SQLModel, table=True):
    """Every label any photo was ever given: who (a device, a person, or the curated set), when, what, on which photo
    (its content hash). Rows are never changed except `retracted_at` (an agronomist's undo): the label a photo trains
    with is decided from its history by one rule (core.labels.decide). `feedback_id` ties a row to the feedback event
    it came from (or went out as), so a redelivered event adds no second row."""

    __tablename__ = "photo_labels"

    id: int | None = Field(default=None, primary_key=True)
    photo_sha256: str = Field(max_length=64, index=True)
    job_id: str | None = Field(default=None, max_length=32, index=True)
    blob_key: str | None = Field(default=None, max_length=200)  # where the photo's bytes are
    item_id: int | None = Field(default=None, foreign_key="review_items.id", index=True)
    label: str = Field(max_length=20)  # a class, "not_cassava" or "unusable"
    source: LabelSource = Field(sa_column=Column(String(20), nullable=False))
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    device_id: int | None = Field(default=None, foreign_key="devices.id")
    adjudicates: bool = False  # the third agronomist's deciding label on a disagreement
    feedback_id: str | None = Field(default=None, max_length=32, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    retracted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReviewSkip(SQLModel, table=True):
    """An agronomist passed on an item: it is not handed to them again (others still get it)."""

    __tablename__ = "review_skips"

    item_id: int = Field(foreign_key="review_items.id", primary_key=True)
    user_id: int = Field(foreign_key="users.id", primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PhotoSplit(SQLModel, table=True):
    """Which side of the split a photo is on, fixed the first time a snapshot took it: it never moves, and its
    near-duplicates (by perceptual hash) join it."""

    __tablename__ = "photo_splits"

    photo_sha256: str = Field(primary_key=True, max_length=64)
    split: str = Field(max_length=10)  # train | holdout
    phash: str = Field(max_length=16, index=True)  # 64-bit perceptual hash, hex
    dataset_version: str = Field(max_length=40)  # the snapshot that first took it
    assigned_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DatasetVersion(SQLModel, table=True):
    """A frozen labelled set (`mhogo dataset snapshot`): its id is the hash of its manifest (photo sha256, label,
    who labelled, source, split), kept in the blob store with the photos it names."""

    __tablename__ = "dataset_versions"

    id: str = Field(primary_key=True, max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(max_length=200)
    parent: str | None = Field(default=None, max_length=40)  # the latest version when this one was made
    manifest_key: str = Field(max_length=200)
    photos: int = 0
    counts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # {split: {label: n}}


class ReviewMark(SQLModel, table=True):
    """How far the review queue's refresh has read (core.review): jobs finished, and farmers' feedback, up to `at`."""

    __tablename__ = "review_marks"

    name: str = Field(primary_key=True, max_length=20)
    at: datetime = Field(sa_type=UTCDateTime)

"""Settings: every knob of mhogo, read from `MHOGO_*` environment variables (or a `.env` file) in one place."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ml.imaging import MAX_PIXELS
from ml.quality import QualityThresholds

REPO = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = REPO / "ml" / "weights" / "baseline.pt"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MHOGO_", env_file=".env", extra="ignore", frozen=True)

    # Where local state lives: SQLite database, blobs, models, Flower's state. URLs below may point elsewhere.
    HOME: Path = Path("~/.mhogo")
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    DATABASE_URL: str | None = None  # default: SQLite under HOME
    MODEL_PATH: Path | None = None  # seeds the registry's champion on a fresh HOME; default: ml/weights/baseline.pt
    # The deployment this process belongs to, whose keys in Redis (queues, counters, locks, rate limits) are under
    # mhogo:<id>: (core.namespace). Unset: the database's deployment id, read at start, so every process on one
    # database is in one namespace with no setting. Set: a process whose database is another deployment's refuses to
    # start (`mhogo up` sets it for its services, to the id it printed).
    DEPLOYMENT: str | None = None

    API_HOST: str = "127.0.0.1"
    API_THREADS: int = Field(default=8, gt=0)  # worker threads per API process for the database, Redis and disk
    API_PORT: int = 8000
    PUBLIC_URL: str | None = None  # how phones reach the API, for status URLs; default http://API_HOST:API_PORT
    FLOWER_HOST: str = "127.0.0.1"  # Flower listens here; put it behind a proxy of yours rather than 0.0.0.0
    FLOWER_PORT: int = 5555
    FLOWER_USER: str = "operator"
    FLOWER_PASSWORD: SecretStr | None = None  # `mhogo up` makes one up and prints it when unset
    METRICS_TOKEN: SecretStr | None = None  # a bearer token that opens /metrics and nothing else (for Prometheus)
    # The farmer's app: a pairing link (`mhogo devices add NAME --link`) works once, within this many seconds.
    PAIRING_EXPIRE_S: int = Field(default=7 * 24 * 3600, gt=0)
    # The built app the API serves at /app/; default: app/dist of the repository mhogo runs from (`make app`).
    APP_DIR: Path | None = None

    # Upload limits.
    RATE_LIMIT: str = "120/minute"  # per device, for uploads, feedback and events each ("limits" notation; "": none)
    POLL_RATE_LIMIT: str = "600/minute"  # per device: reading a job, an upload's offset, sending its chunks
    # Per client address, before authentication: every request (generous: a mobile carrier puts thousands of phones
    # behind one address), and requests whose token is missing or unknown (401s; past this, 429).
    IP_RATE_LIMIT: str = "6000/minute"
    AUTH_FAILURE_RATE_LIMIT: str = "60/minute"
    # People (agronomists, operators): a browser login lasts this long; this many wrong passwords in a row lock the
    # login for LOGIN_LOCKOUT_S; the session cookie is Secure (sent over HTTPS only; browsers also send it to
    # http://localhost and 127.0.0.1) unless this is false.
    SESSION_TTL_S: float = Field(default=12 * 3600.0, gt=0)
    LOGIN_MAX_FAILURES: int = Field(default=5, gt=0)
    LOGIN_LOCKOUT_S: float = Field(default=300.0, gt=0)
    COOKIE_SECURE: bool = True
    # The review queue (core.review): answers whose top two classes are closer than this are "unsure"; leaf-gate
    # scores this close to the threshold are borderline; this share of confident answers is audited; this share of
    # items is labelled by two agronomists independently; an item handed out is kept for its agronomist this long.
    REVIEW_UNSURE_MARGIN: float = Field(default=0.2, ge=0, le=1)
    REVIEW_GATE_BAND: float = Field(default=0.1, ge=0, le=1)
    REVIEW_AUDIT_SHARE: float = Field(default=0.03, ge=0, le=1)
    REVIEW_DOUBLE_SHARE: float = Field(default=0.2, ge=0, le=1)
    REVIEW_LEASE_S: float = Field(default=600.0, gt=0)
    # Dataset versions (core.datasets): this share of new agronomist-labelled photos goes to the frozen holdout.
    DATASET_HOLDOUT_SHARE: float = Field(default=0.2, ge=0, le=1)
    MAX_QUEUE_DEPTH: int = Field(default=5000, gt=0)  # photos waiting beyond this: uploads get 503 + Retry-After
    QUEUE_DRAIN_PER_S: float = Field(default=5.0, gt=0)  # how fast the workers drain it, for the Retry-After guess
    MAX_UPLOAD_BYTES: int = Field(default=10 * 1024 * 1024, gt=0)
    MAX_IMAGE_PIXELS: int = Field(default=MAX_PIXELS, gt=0)  # above this a photo is refused (ml.imaging: why 24 MP)
    # Photos are checked (opened and decoded, ml.imaging.validate) beside the intake's writer, by this many threads per
    # API process, and those that decode more than 4 MP (a large PNG: up to a second each) by LARGE_IMAGE_CHECK_THREADS
    # of their own: a large photo never holds up a phone's. Together they bound the checks' memory.
    IMAGE_CHECK_THREADS: int = Field(default=2, gt=0)
    LARGE_IMAGE_CHECK_THREADS: int = Field(default=1, gt=0)
    MAX_UPLOADS_IN_FLIGHT: int = Field(default=4, gt=0)  # per device and API process, body to answer; beyond: 429
    UPLOAD_EXPIRE_S: int = Field(default=24 * 3600, gt=0)  # a resumable upload not finished by then is dropped
    # Unfinished resumable uploads a device may hold at once, and the bytes they may declare together (default: four
    # photos of MAX_UPLOAD_BYTES): their parts wait on the server's disk until they finish, are abandoned or expire.
    MAX_OPEN_UPLOADS: int = Field(default=16, gt=0)
    MAX_OPEN_UPLOAD_BYTES: int | None = Field(default=None, gt=0)

    # Quality gate, measured on the working-size image (ml/imaging.py, ml/quality.py); set from ../shared/data.
    MIN_SIDE_PX: int = 160
    # On the 92 cassava photos: mean luma 69..175, near-white share <= 0.1, Laplacian variance >= 119. The same
    # photos darkened to a fifth reach at most luma 35; blurred with a 3 px Gaussian, at most variance 12.
    DARK_LUMA: float = 45.0  # mean luma (0..255) below which a photo is too dark to read
    BRIGHT_LUMA: float = 200.0  # mean luma above which it is washed out
    BRIGHT_CLIPPED_FRACTION: float = 0.25  # share of near-white pixels above which it is washed out
    BLUR_LAPLACIAN_VAR: float = 35.0  # variance of the Laplacian below which a photo is blurry
    # Share of plant-green pixels (excess green) below which no leaf fills the frame: 0.38 at least on the 92 cassava
    # photos (2nd percentile 0.40); a quarter of the negatives (soil, hands, objects, food) are below 0.17.
    MIN_GREEN_FRACTION: float = 0.15

    # Task events (received, started, succeeded, ...) are what Flower's task list shows. Off, end to end was no
    # faster within this machine's noise (bench/e2e.py: 0.807 of the limit against 0.814 with them).
    TASK_EVENTS: bool = True
    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool = True  # one JSON object per line, with the job id; false: plain text for a person at a terminal

    # Workers.
    TORCH_THREADS: int = 0  # 0: as many as the machine has cores
    # How inference workers run the champion. bench/runtime.py picks the fastest runtime whose answers stay within
    # one point of eager PyTorch, on photos no model saw too: the fp32 ONNX build under ONNX Runtime (73 ms a photo
    # against 122 eager, the same answer on 741 of 741 unseen variants). The int8 build is 2x faster again but gave
    # another answer on 2.8 % of them: more than one point, so it is there to choose, not the default.
    SERVING_RUNTIME: Literal["onnx-int8", "onnx-fp32", "torch"] = "onnx-fp32"
    CALIBRATION_DIR: Path | None = None  # photos (class folders) to calibrate an int8 build on; default: samples/
    MODEL_REFRESH_S: float = 2.0  # how often inference workers look for a new champion
    TASK_SOFT_TIME_LIMIT_S: int = 60
    TASK_TIME_LIMIT_S: int = 90
    RETRAIN_TIME_LIMIT_S: int = 3600
    VISIBILITY_TIMEOUT_S: int = 7200  # longer than any task's hard time limit, so nothing is redelivered early
    MAX_DELIVERIES: int = 5  # a message delivered more often than this is a poison message: the job fails
    TASK_MAX_RETRIES: int = 10  # with backoff capped at 60 s and full jitter: minutes of outage, not seconds
    PUBLISH_TIMEOUT_S: float = 2.0

    # Storage. Below this much free space where photos (or the SQLite database) are written, /healthz answers 503.
    MIN_FREE_BYTES: int = Field(default=200 * 1024 * 1024, ge=0)
    # A photo file no job refers to (its upload refused, or cut off between the write and the commit) is deleted by
    # the sweep once it is this old: one of the blob store's 256 photo folders a sweep, in turn (core.orphans).
    ORPHAN_GRACE_S: float = Field(default=3600.0, gt=0)

    # Sweeper: re-enqueues jobs that never reached the queue, or whose message was lost.
    SWEEP_INTERVAL_S: float = 30.0
    SWEEP_RECEIVED_AFTER_S: float = 10.0
    SWEEP_STALE_AFTER_S: float = 900.0
    SWEEP_MAX_ENQUEUES: int = 5
    # A retraining run still queued this long after its message went out is sent again (the broker lost it), at most
    # SWEEP_MAX_ENQUEUES times; one running longer than MHOGO_RETRAIN_TIME_LIMIT_S is failed (its worker died).
    SWEEP_RUN_RESEND_AFTER_S: float = 900.0

    TRAIN_DATA_DIR: Path | None = None  # base data for retraining jobs
    # Frozen holdout, laid out like ../shared/data (cassava/<class>/, negatives/): challenger and champion are both
    # evaluated on it before a promotion. Never trained on: feedback photos near-duplicate to one are left out.
    HOLDOUT_DIR: Path | None = None
    RETRAIN_DRY_RUN: bool = False  # two small batches per model: for tests and quick rehearsals of the loop
    RETRAIN_NICE: int = Field(default=10, ge=0, le=19)  # a retraining-only worker runs at this lower CPU priority
    # Torch threads of a retraining run; 0: as TORCH_THREADS. Where training shares a machine with inference, give
    # each its own cores: two thread pools on the same cores wait on each other at every parallel region.
    RETRAIN_TORCH_THREADS: int = Field(default=0, ge=0)

    # Metrics: aggregation workers (the events queue) write a tick of figures to the database this often.
    METRICS_INTERVAL_S: float = 60.0
    METRICS_WINDOW_S: float = 900.0  # rates, latency percentiles and drift are over the jobs finished this far back
    METRICS_FEEDBACK_LAST_N: int = 200  # accuracy, macro-F1 and calibration: over each version's last N labels
    METRICS_RETENTION_DAYS: float = 30.0  # older points are deleted by retention (core.retention)
    # Fewer photos in the window than this: no drift figure. The PSI of two samples of one population is about
    # 9 * (1/n + 1/m) over ten bins: with 1000 reference photos and 100 in the window, about 0.1 of pure noise.
    DRIFT_MIN_PHOTOS: int = 100

    # Retention (core.retention): what is deleted when, run by beat on the events queue this often, at most
    # RETENTION_BATCH rows or files of each kind per run (one short transaction each; a full batch sends the next run
    # at once). Kept whatever their age: photos with trusted labels (training data), the models that served as
    # champion (audit and rollback), the current challenger, the frozen holdout (the operator's folder).
    RETENTION_INTERVAL_S: float = Field(default=3600.0, gt=0)
    RETENTION_BATCH: int = Field(default=1000, gt=0)
    PHOTO_RETENTION_DAYS: float = Field(default=90.0, gt=0)  # a finished job's photo, unless it has a trusted label
    JOB_RETENTION_DAYS: float = Field(default=365.0, gt=0)  # a finished job row with its feedback, unless trusted
    CLIENT_EVENT_RETENTION_DAYS: float = Field(default=30.0, gt=0)  # phone events, from when the server got them
    CHALLENGER_RETENTION_DAYS: float = Field(default=30.0, gt=0)  # checkpoint and builds of a model never champion
    RUN_FILES_RETENTION_DAYS: float = Field(default=7.0, gt=0)  # a finished run's dataset and checkpoint copy

    # Trigger rules: any one of them enqueues a retraining job (one at a time, then a cooldown).
    AUTO_RETRAIN: bool = True
    TRIGGER_ACCURACY_BELOW: float = 0.6  # accuracy of the champion on its last N trusted labels below this...
    TRIGGER_ACCURACY_LAST_N: int = 30  # ... once there are N of them
    TRIGGER_NEW_LABELS: int = 500  # this many trusted labels since the champion took over (or the last run)
    TRIGGER_DRIFT_PSI: float = 0.25  # the largest drift score above this ...
    TRIGGER_DRIFT_TICKS: int = 5  # ... on this many ticks in a row
    RETRAIN_COOLDOWN_S: float = 6 * 3600.0  # after a run fired, no rule fires again for this long
    # Farmers' labels count as trusted when this many devices agree and no device says otherwise (a device's
    # latest word counts, once however often it is sent). An agronomist's label is trusted as it is.
    FARMERS_TO_AGREE: int = Field(default=2, ge=1)
    # No device is behind more than this share of any figure a decision reads (the accuracy rule's last N trusted
    # labels, the new-labels count, the dashboard's trusted and farmer figures) nor of the feedback photos a
    # retraining run adds: beyond it, that device's labels are left out. Agronomists' labels are not capped.
    MAX_DEVICE_SHARE: float = Field(default=0.1, gt=0, le=1)
    FEEDBACK_HOLDOUT_SHARE: float = 0.3  # share of labelled photos kept out of training to evaluate on

    # Promotion: the challenger must beat the champion on the holdout plus held-out feedback by this much accuracy,
    # and lose at most this much recall on any class (and on turning away photos that are not cassava leaves).
    PROMOTION_MIN_GAIN: float = 0.02
    PROMOTION_MAX_CLASS_DROP: float = 0.10

    @field_validator("HOME", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("MAX_IMAGE_PIXELS", "MIN_SIDE_PX")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @cached_property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{self.HOME / 'mhogo.db'}"

    @cached_property
    def max_open_upload_bytes(self) -> int:
        return self.MAX_OPEN_UPLOAD_BYTES or 4 * self.MAX_UPLOAD_BYTES

    @cached_property
    def blob_dir(self) -> Path:
        return self.HOME / "blobs"

    @cached_property
    def model_dir(self) -> Path:
        return self.HOME / "models"

    @cached_property
    def model_path(self) -> Path:
        return self.MODEL_PATH or BUNDLED_MODEL

    @cached_property
    def app_dir(self) -> Path:
        return self.APP_DIR or REPO / "app" / "dist"

    @cached_property
    def public_url(self) -> str:
        return (self.PUBLIC_URL or f"http://{self.API_HOST}:{self.API_PORT}").rstrip("/")

    @cached_property
    def quality_thresholds(self) -> QualityThresholds:
        return QualityThresholds(
            min_side_px=self.MIN_SIDE_PX,
            dark_luma=self.DARK_LUMA,
            bright_luma=self.BRIGHT_LUMA,
            bright_clipped_fraction=self.BRIGHT_CLIPPED_FRACTION,
            blur_laplacian_var=self.BLUR_LAPLACIAN_VAR,
            min_green_fraction=self.MIN_GREEN_FRACTION,
        )

    @cached_property
    def calibration_dir(self) -> Path:
        return self.CALIBRATION_DIR or REPO / "samples"

    @cached_property
    def torch_threads(self) -> int:
        return self.TORCH_THREADS or os.cpu_count() or 1


settings = Settings()

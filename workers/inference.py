"""The per-photo task: one task, on the inference queue, does everything a photo needs. It claims the job, decodes
the photo once, prepares it, runs the quality gate, the model and its leaf gate, and stores the outcome: two
database writes and one message per photo, nothing passed between processes but the job id.

Each worker process loads the registry's champion once (in MHOGO_SERVING_RUNTIME), and again only when an operator
promotes another version."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from celery.signals import worker_process_init

from core import jobs, registry
from core.config import settings
from core.serving import load_classifier
from ml.diagnose import examine
from ml.prediction import Classifier
from schemas.errors import ModelError
from schemas.findings import Finding
from schemas.queues import QueueName, TaskName
from schemas.reasons import RejectReason
from workers.app import app
from workers.base import RETRY_POLICY, TRANSIENT_ERRORS, PhotoTask

log = logging.getLogger(__name__)


class InferenceTask(PhotoTask):
    """Serves the registry's champion. Every MHOGO_MODEL_REFRESH_S it looks at which version is champion and, when
    an operator promoted or rolled back, loads that one between two tasks: no restart, no task lost."""

    _classifier: Classifier | None = None
    _checked_at = -math.inf
    _lock = threading.Lock()

    @property
    def classifier(self) -> Classifier:
        with InferenceTask._lock:
            now = time.monotonic()
            if InferenceTask._classifier is None or now - InferenceTask._checked_at >= settings.MODEL_REFRESH_S:
                InferenceTask._classifier = self._champion(InferenceTask._classifier)
                InferenceTask._checked_at = now
            return InferenceTask._classifier

    def _champion(self, serving: Classifier | None) -> Classifier:
        with self.session() as session:
            row = registry.ensure_champion(session, self.blobs, settings.model_path)
        if serving is not None and serving.version == row.version:
            return serving
        threads = self.app.conf.get("mhogo_math_threads") or settings.torch_threads
        classifier = load_classifier(
            self.blobs, row, settings.SERVING_RUNTIME, threads, settings.quality_thresholds,
            settings.calibration_dir, settings.MAX_IMAGE_PIXELS, prebuilt_model=settings.model_path,
        )  # fmt: skip
        log.warning(
            "serving model %s in %s (was %s)",
            row.version,
            settings.SERVING_RUNTIME,
            serving.version if serving else "none",
        )
        return classifier


def finish(task: PhotoTask, job_id: str, finding: Finding) -> bool:
    with task.session() as session:
        stored = jobs.finish(session, job_id, finding)
    if stored:  # the job id and the task come with the log context
        if finding.reason is not None:
            log.info("job rejected", extra={"reason": finding.reason.value, "model_version": finding.model_version})
        else:
            extra = {"label": finding.label, "confidence": finding.confidence, "model_version": finding.model_version}
            log.info("job classified", extra=extra)
    return stored


# A model that does not load is the operator's to fix, not the photo's fault: retry, so jobs wait instead of failing.
INFERENCE_RETRY_POLICY = RETRY_POLICY | {"autoretry_for": (*TRANSIENT_ERRORS, ModelError)}


@app.task(name=TaskName.DIAGNOSE, bind=True, base=InferenceTask, **INFERENCE_RETRY_POLICY)
def diagnose(self: InferenceTask, job_id: str, blob_key: str) -> str | None:
    delivered = self.delivered()
    if self.poisoned(job_id, delivered):
        return None
    classifier = self.classifier  # before the claim: a model that does not load leaves the job queued, not stuck
    with self.session() as session:
        claim = jobs.claim(session, job_id)
    if claim is jobs.Claim.UNKNOWN:
        self.refuse(f"job {job_id}", delivered)
    if claim is jobs.Claim.FINISHED:  # by an earlier delivery
        return "already finished"
    finding = examine(self.blobs.get(blob_key), classifier, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
    if finding.reason is RejectReason.UNREADABLE:  # the API checked it, so only a damaged blob gets here
        log.warning("stored photo unreadable", extra={"blob_key": blob_key})
    return "stored" if finish(self, job_id, finding) else "already stored"


@worker_process_init.connect
def _load_model_at_start(**_: Any) -> None:
    """An inference worker loads the model as its process starts: the first photo does not wait for it, and a
    broken model file shows in the log at once."""
    if QueueName.INFERENCE.value not in (app.amqp.queues.consume_from or {}):
        return
    try:
        diagnose.classifier  # noqa: B018  (loads and caches)
    except ModelError:
        log.exception("the serving model does not load; inference tasks will retry until it does")

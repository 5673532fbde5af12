"""Task of the inference queue: the CNN, and its leaf gate, which turns away photos that are not cassava leaves
(the rejection is stored here; the chain stops). Each worker process loads the registry's champion once, and again only
when an operator promotes another version."""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from celery.signals import worker_process_init
from PIL import Image

from core import registry
from core.config import settings
from core.errors import ModelError
from ml.imaging import decode, prepare
from ml.quality import leaf_verdict
from schemas.queues import QueueName, TaskName
from schemas.tasks import PhotoWork
from workers.app import app
from workers.base import RETRY_POLICY, TRANSIENT_ERRORS, PhotoTask
from workers.photos import elapsed_ms, reject

if TYPE_CHECKING:
    from ml.predictor import Predictor

log = logging.getLogger(__name__)


class InferenceTask(PhotoTask):
    """Serves the registry's champion. Every MHOGO_MODEL_REFRESH_S it looks at which version is champion and, when
    an operator promoted or rolled back, loads that one between two tasks: no restart, no task lost."""

    _predictor: Predictor | None = None
    _checked_at = -math.inf
    _lock = threading.Lock()

    @property
    def predictor(self) -> Predictor:
        with InferenceTask._lock:
            now = time.monotonic()
            if InferenceTask._predictor is None or now - InferenceTask._checked_at >= settings.MODEL_REFRESH_S:
                InferenceTask._predictor = self._champion(InferenceTask._predictor)
                InferenceTask._checked_at = now
            return InferenceTask._predictor

    def _champion(self, serving: Predictor | None) -> Predictor:
        import torch

        from ml.predictor import Predictor  # torch is imported by inference workers only

        with self.session() as session:
            row = registry.ensure_champion(session, self.blobs, settings.model_path)
        if serving is not None and serving.version == row.version:
            return serving
        torch.set_num_threads(settings.torch_threads)
        predictor = Predictor(registry.load(self.blobs, row))
        log.warning("serving model %s (was %s)", row.version, serving.version if serving else "none")
        return predictor


def prepared_image(task: InferenceTask, work: PhotoWork, predictor: Predictor) -> Image.Image:
    """The prepared image, or a fresh one if the serving model wants other preprocessing than the photos worker."""
    if work.prepared_key is not None and work.prepared_with == predictor.preprocess.prepare_id:
        return Image.open(io.BytesIO(task.blobs.get(work.prepared_key))).convert("RGB")
    image = decode(task.blobs.get(work.blob_key), settings.MAX_IMAGE_PIXELS)
    return prepare(image, predictor.preprocess).image


# A model that does not load is the operator's to fix, not the photo's fault: retry, so jobs wait instead of failing.
INFERENCE_RETRY_POLICY = RETRY_POLICY | {"autoretry_for": (*TRANSIENT_ERRORS, ModelError)}


@app.task(name=TaskName.INFER, bind=True, base=InferenceTask, **INFERENCE_RETRY_POLICY)
def classify(self: InferenceTask, payload: dict[str, Any]) -> dict[str, Any] | None:
    start = time.perf_counter()
    work = PhotoWork.model_validate(payload)
    if self.poisoned(work.job_id):
        return None
    predictor = self.predictor
    prediction = predictor.predict([prepared_image(self, work, predictor)])[0]
    work.model_version = prediction.model_version
    work.timings_ms["infer"] = elapsed_ms(start)
    if prediction.leaf_probability is not None:  # kept with the photo's figures: its drift tells operators a lot
        work.input_stats["leaf_probability"] = prediction.leaf_probability
    reason = leaf_verdict(work.input_stats, not prediction.not_a_leaf, settings.quality_thresholds)
    if reason is not None:
        reject(self, work, reason)
        return None
    work.label = prediction.label
    work.confidence = prediction.confidence
    work.probabilities = prediction.probabilities
    return work.model_dump(mode="json")


@worker_process_init.connect
def _load_model_at_start(**_: Any) -> None:
    """An inference worker loads the model as its process starts: the first photo does not wait for it, and a
    broken model file shows in the log at once."""
    if QueueName.INFERENCE.value not in (app.amqp.queues.consume_from or {}):
        return
    try:
        classify.predictor  # noqa: B018  (loads and caches)
    except ModelError:
        log.exception("the serving model does not load; inference tasks will retry until it does")

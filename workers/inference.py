"""Task of the inference queue: the CNN. The model is loaded once per worker process, on first use."""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from celery.signals import worker_process_init
from PIL import Image

from core.config import settings
from core.errors import ModelError
from ml.imaging import decode, prepare
from schemas.queues import QueueName, TaskName
from schemas.tasks import PhotoWork
from workers.app import app
from workers.base import RETRY_POLICY, TRANSIENT_ERRORS, PhotoTask
from workers.photos import elapsed_ms

if TYPE_CHECKING:
    from ml.predictor import Predictor

log = logging.getLogger(__name__)


class InferenceTask(PhotoTask):
    _predictor: Predictor | None = None
    _lock = threading.Lock()

    @property
    def predictor(self) -> Predictor:
        with InferenceTask._lock:
            if InferenceTask._predictor is None:
                from ml.predictor import Predictor  # torch is imported by inference workers only

                InferenceTask._predictor = Predictor.from_file(settings.model_path, threads=settings.torch_threads)
            return InferenceTask._predictor


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
    work.label = prediction.label
    work.confidence = prediction.confidence
    work.probabilities = prediction.probabilities
    work.model_version = prediction.model_version
    work.timings_ms["infer"] = elapsed_ms(start)
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

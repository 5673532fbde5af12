"""Tasks of the photos queue: preprocess, quality filter and store for each photo, and the sweeper.

No torch here: these processes stay small and many.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from PIL import Image
from redis.exceptions import LockError

from core import jobs
from core.config import settings
from core.errors import UnreadableImage
from ml.imaging import PreprocessConfig, decode, encode_png, prepare
from ml.quality import quality_gate
from producers.publisher import Publisher
from producers.sweeper import sweep_once
from schemas.queues import TaskName
from schemas.reasons import RejectReason
from schemas.tasks import PhotoWork
from workers.app import app
from workers.base import RETRY_POLICY, MhogoTask, PhotoTask

log = logging.getLogger(__name__)

PREPROCESS = PreprocessConfig()
SWEEP_LOCK = "mhogo:sweep:lock"


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def prepare_photo(task: PhotoTask, work: PhotoWork, config: PreprocessConfig) -> PhotoWork:
    """Decode the uploaded photo, prepare it, and store the prepared image as a lossless blob."""
    image: Image.Image = decode(task.blobs.get(work.blob_key), settings.MAX_IMAGE_PIXELS)
    prepared = prepare(image, config)
    key = task.blobs.put("prepared", encode_png(prepared.image), ".png")
    return work.model_copy(
        update={"prepared_key": key, "prepared_with": config.prepare_id, "input_stats": prepared.stats}
    )


def reject(task: PhotoTask, work: PhotoWork, reason: RejectReason) -> None:
    with task.session() as session:
        stored = jobs.finish(session, work.model_copy(update={"rejection": reason.value}))
    if stored:  # the job id and the task come with the log context
        log.info("job rejected", extra={"reason": reason.value, "model_version": work.model_version})
    task.stop_chain()


@app.task(name=TaskName.PREPROCESS, bind=True, base=PhotoTask, **RETRY_POLICY)
def preprocess(self: PhotoTask, job_id: str, blob_key: str) -> dict[str, Any] | None:
    start = time.perf_counter()
    if self.poisoned(job_id):
        return None
    with self.session() as session:
        if jobs.claim(session, job_id) is None:  # finished by an earlier delivery
            self.stop_chain()
            return None
    work = PhotoWork(job_id=job_id, blob_key=blob_key)
    try:
        work = prepare_photo(self, work, PREPROCESS)
    except UnreadableImage:  # the API checked it, so only a damaged blob gets here
        reject(self, work, RejectReason.UNREADABLE)
        return None
    work.timings_ms["preprocess"] = elapsed_ms(start)
    return work.model_dump(mode="json")


@app.task(name=TaskName.FILTER, bind=True, base=PhotoTask, **RETRY_POLICY)
def quality_filter(self: PhotoTask, payload: dict[str, Any]) -> dict[str, Any] | None:
    start = time.perf_counter()
    work = PhotoWork.model_validate(payload)
    reason = quality_gate(work.input_stats, settings.quality_thresholds)
    work.timings_ms["filter"] = elapsed_ms(start)
    if reason is not None:
        reject(self, work, reason)
        return None
    return work.model_dump(mode="json")


@app.task(name=TaskName.STORE, bind=True, base=PhotoTask, **RETRY_POLICY)
def store(self: PhotoTask, payload: dict[str, Any]) -> str:
    work = PhotoWork.model_validate(payload)
    with self.session() as session:
        stored = jobs.finish(session, work)
    if stored:
        log.info(
            "job classified",
            extra={"label": work.label, "confidence": work.confidence, "model_version": work.model_version},
        )
    return "stored" if stored else "already stored"


@app.task(name=TaskName.SWEEP, bind=True, base=MhogoTask, **RETRY_POLICY)
def sweep(self: MhogoTask) -> dict[str, int]:
    """Enqueue every job the API could not enqueue, and re-enqueue those whose message was lost."""
    lock = self.deliveries.redis.lock(SWEEP_LOCK, timeout=max(60, int(settings.SWEEP_INTERVAL_S * 2)), blocking=False)
    if not lock.acquire():
        return {"skipped": 1}
    try:
        return sweep_once(self.session, Publisher(app), settings)
    finally:
        with contextlib.suppress(LockError):  # it expired during a very long sweep: another may hold it now
            lock.release()

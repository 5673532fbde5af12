"""Accepting a photo: validate, store the bytes, commit the job, then enqueue. Accepted means durable: the photo
and the job row are on disk (fsynced) before anything is sent, and a job the broker did not take waits for the
sweeper. The row is committed as `queued` in the same write that creates it, and the uploads that arrive together
share that write (`GroupIntake`). If the API process dies between the commit and the send, the sweeper re-sends the
job after MHOGO_SWEEP_STALE_AFTER_S."""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import cast

from sqlmodel import Session

from core import jobs
from core.blobs import BlobStore
from core.db import close_session
from core.publisher import Publisher
from ml.imaging import validate
from schemas.errors import BadInput, IdempotencyConflict, MhogoError, MissingIdempotencyKey, UnsupportedMediaType
from schemas.statuses import JobStatus
from schemas.tables import Job

log = logging.getLogger(__name__)

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
ACCEPTED_DECLARED_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream"}
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as an sf-string carries it


@dataclass(frozen=True)
class Accepted:
    job_id: str
    status: str
    replayed: bool  # True when the key was seen before: this is the first request's job


def check_idempotency_key(key: str | None) -> str:
    if not key:
        raise MissingIdempotencyKey(
            "Send an 'Idempotency-Key' header: a unique value per photo (for example a UUID), the same on every retry."
        )
    if not IDEMPOTENCY_KEY.match(key):
        raise MissingIdempotencyKey("The 'Idempotency-Key' must be 1 to 255 visible ASCII characters.")
    return key


def check_declared_type(content_type: str | None) -> None:
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ACCEPTED_DECLARED_TYPES:
        raise UnsupportedMediaType(
            "Send the photo as a JPEG or PNG: Content-Type image/jpeg or image/png (or in the multipart field "
            f"'photo'), not {declared or 'nothing'}."
        )


def replay(existing: Job, sha256: str) -> Accepted | IdempotencyConflict:
    if existing.content_sha256 != sha256:
        return IdempotencyConflict(
            "This Idempotency-Key was already used for a different photo. Use a new key for each new photo."
        )
    return Accepted(existing.id, existing.status, replayed=True)


@dataclass(frozen=True)
class Arrival:
    """A photo as it arrived: who sent it, under which key, and its bytes."""

    device_id: int
    key: str
    data: bytes


Answer = Accepted | MhogoError  # what each upload of a group gets: accepted (new or replayed), or refused and why


def stage(blobs: BlobStore, upload: Arrival, max_pixels: int) -> jobs.NewPhoto:
    """Validate the photo (BadInput if it is not a whole JPEG or PNG) and write its bytes, durable at the next flush.
    No lookup of the key first: most uploads are new, and a replay finds its job when the insert hits the key."""
    sha256 = hashlib.sha256(upload.data).hexdigest()
    fmt, _ = validate(upload.data, max_pixels)
    blob_key = blobs.key_for("photos", sha256, SUFFIXES[fmt])
    blobs.stage(blob_key, upload.data)
    return jobs.NewPhoto(upload.device_id, upload.key, sha256, blob_key, MEDIA_TYPES[fmt], len(upload.data))


def accept_photos(
    session: Session, blobs: BlobStore, publisher: Publisher, uploads: Sequence[Arrival], max_pixels: int
) -> list[Answer]:
    """Accept a group of uploads at about the cost of one: each is validated and its bytes written, then one flush of
    the blob store, one INSERT and one commit make all of them durable, and their messages go out over one
    connection. Per upload its answer, in order. A database error raises: then none of the group was accepted."""
    answers: list[Answer | None] = [None] * len(uploads)
    staged: list[tuple[int, jobs.NewPhoto]] = []
    for n, upload in enumerate(uploads):
        try:
            staged.append((n, stage(blobs, upload, max_pixels)))
        except BadInput as exc:
            answers[n] = exc
    if staged:
        blobs.flush()  # the bytes first: a committed job always finds its photo
    job_ids = jobs.insert_jobs(session, [photo for _, photo in staged], queued=True)
    new: list[tuple[int, str, str]] = []
    for (n, photo), job_id in zip(staged, job_ids, strict=True):
        if job_id is not None:
            new.append((n, job_id, photo.blob_key))
            continue
        existing = jobs.find_job(session, photo.device_id, photo.idempotency_key)  # a retry, or a concurrent twin
        assert existing is not None
        answers[n] = replay(existing, photo.content_sha256)
    sent = publisher.publish_photos([(job_id, blob_key) for _, job_id, blob_key in new])
    if not sent:
        log.warning("%d jobs left for the sweeper: the broker did not take them", len(new))
        jobs.unqueue(session, [job_id for _, job_id, _ in new])
    for n, job_id, _ in new:
        answers[n] = Accepted(job_id, JobStatus.QUEUED if sent else JobStatus.RECEIVED, replayed=False)
    assert all(answer is not None for answer in answers)
    return cast(list[Answer], answers)


class GroupIntake:
    """Group commit for uploads: one writer thread per API process takes every upload that arrived while it was
    busy and accepts them together (`accept_photos`), so concurrent uploads share one flush of the disk, one commit
    and one connection to the broker. Each request awaits its own answer. With a commit (an fsync of SQLite's log,
    taken in turn by the API processes) per upload, SQLite took at most ~250 uploads a second on this disk
    (bench/upload_api.py). A group waits for nothing: it is whatever queued up during the group before it."""

    def __init__(
        self, session: Callable[[], Session], blobs: BlobStore, publisher: Publisher, max_pixels: int,
        max_group: int = 64,
    ) -> None:  # fmt: skip
        self._session, self._blobs, self._publisher = session, blobs, publisher
        self._max_pixels, self._max_group = max_pixels, max_group
        self._waiting: queue.SimpleQueue[tuple[Arrival, Future[Accepted]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def submit(self, upload: Arrival) -> Future[Accepted]:
        """The upload's answer, once its group is durable (or the error that refused it)."""
        answer: Future[Accepted] = Future()
        with self._lock:
            if self._writer is None:  # started on first use: after uvicorn's fork, in the process that serves
                self._writer = threading.Thread(target=self._write, name="group-intake", daemon=True)
                self._writer.start()
            self._waiting.put((upload, answer))
        return answer

    def close(self) -> None:
        """Accept what is waiting, then stop the writer."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._waiting.put(None)
        if writer is not None:
            writer.join()

    def _write(self) -> None:
        while True:
            group, stopping = self._next_group()
            if group:
                self._accept(group)
            if stopping:
                return

    def _next_group(self) -> tuple[list[tuple[Arrival, Future[Accepted]]], bool]:
        group: list[tuple[Arrival, Future[Accepted]]] = []
        item = self._waiting.get()
        while item is not None:
            group.append(item)
            if len(group) >= self._max_group:
                break
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                break
        return group, item is None

    def _accept(self, group: list[tuple[Arrival, Future[Accepted]]]) -> None:
        session = self._session()
        try:
            answers = accept_photos(session, self._blobs, self._publisher, [upload for upload, _ in group],
                                    self._max_pixels)  # fmt: skip
        except BaseException as exc:  # nothing of the group was accepted: each request answers with the error
            for _, future in group:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            close_session(session)
        for (_, future), answer in zip(group, answers, strict=True):
            if isinstance(answer, Accepted):
                future.set_result(answer)
            else:
                future.set_exception(answer)

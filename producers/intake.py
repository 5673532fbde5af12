"""Accepting a photo: check it, store the bytes, commit the job, then enqueue. Accepted means durable: the photo
and the job row are on disk (fsynced) before anything is sent, and a job the broker did not take waits for the
sweeper. The row is committed as `queued` in the same write that creates it, and the uploads that arrive together
share that write (`GroupIntake`). If the API process dies between the commit and the send, the sweeper re-sends the
job after MHOGO_SWEEP_STALE_AFTER_S; if it dies between writing the photo and the commit, or the upload is refused
after its photo was written, the orphan sweep deletes the file (core.orphans)."""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from core import jobs
from core.blobs import FULL, BlobStore
from core.db import close_session, disk_full
from core.publisher import Publisher
from ml.imaging import pixels_to_check, validate
from schemas.errors import BadInput, IdempotencyConflict, MissingIdempotencyKey, StorageFull, UnsupportedMediaType
from schemas.statuses import JobStatus
from schemas.tables import Job

log = logging.getLogger(__name__)

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
ACCEPTED_DECLARED_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream"}
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as an sf-string carries it
# A photo whose check decodes more pixels is checked apart (GroupIntake): a PNG over 4 MP takes 25 ms and up, to
# 160 ms at 23 MP (more for noisy pixels), where the farmer's app sends 1024 px JPEGs (2 ms) and a phone's own
# 12 MP JPEG, decoded at 1/8 scale, takes 28 ms.
LARGE_PIXELS = 4_000_000


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


@dataclass(frozen=True)
class Checked:
    """A photo `check_photo` found whole: the row its job will have, and the bytes to store."""

    photo: jobs.NewPhoto
    data: bytes

    @property
    def key(self) -> tuple[int, str]:
        return self.photo.device_id, self.photo.idempotency_key


# What each upload of a group gets: accepted (new or replayed), or refused and why (BadInput, IdempotencyConflict,
# StorageFull; an I/O error other than a full disk, answered as the unexpected error it is).
Answer = Accepted | Exception


def check_photo(upload: Arrival, max_pixels: int) -> Checked:
    """The photo named by its sha256, or BadInput if it is not a whole JPEG or PNG of at most `max_pixels`. The
    costly part of accepting (the bytes hashed and decoded), done outside the writer."""
    sha256 = hashlib.sha256(upload.data).hexdigest()
    fmt, _ = validate(upload.data, max_pixels)
    blob_key = BlobStore.key_for("photos", sha256, SUFFIXES[fmt])
    photo = jobs.NewPhoto(upload.device_id, upload.key, sha256, blob_key, MEDIA_TYPES[fmt], len(upload.data))
    return Checked(photo, upload.data)


def store_photos(session: Session, blobs: BlobStore, publisher: Publisher, group: Sequence[Checked]) -> list[Answer]:
    """Accept a group of checked photos at about the cost of one. Keys their devices used before are answered from
    their jobs, found in one query, before anything is written (a key reused for other bytes writes no file); the
    new photos' bytes are written, then one flush of the blob store, one INSERT and one commit make them all
    durable, and their messages go out over one connection. A full disk refuses only the photos it could not keep
    (StorageFull). Per photo its answer, in order. Any other database error raises: none of the group is accepted."""
    answers: dict[int, Answer] = {}
    known = jobs.find_jobs(session, [item.key for item in group])
    first: dict[tuple[int, str], int] = {}  # the first of each new key: a twin later in the group waits for its job
    staged: list[int] = []
    for n, item in enumerate(group):
        if item.key in known:
            answers[n] = replay(known[item.key], item.photo.content_sha256)
        elif item.key not in first:
            first[item.key] = n
            try:
                blobs.stage(item.photo.blob_key, item.data)
                staged.append(n)
            except StorageFull as exc:
                answers[n] = exc
    staged = _flush(blobs, staged, answers)  # the bytes first: a committed job always finds its photo
    job_ids = _insert(session, [group[n].photo for n in staged], staged, answers)
    new = [(n, job_id) for n, job_id in zip(staged, job_ids, strict=True) if job_id is not None]
    taken = {n for n, _ in new}
    # The twins, and the keys another API process took between the look-up and the insert: their jobs, found now.
    rest = [n for n in range(len(group)) if n not in answers and n not in taken]
    found = jobs.find_jobs(session, [group[n].key for n in rest]) if rest else {}
    for n in rest:
        job = found.get(group[n].key)
        answers[n] = replay(job, group[n].photo.content_sha256) if job else answers[first[group[n].key]]
    status = _publish(session, publisher, [(job_id, group[n].photo.blob_key) for n, job_id in new])
    for n, job_id in new:
        answers[n] = Accepted(job_id, status, replayed=False)
    return [answers[n] for n in range(len(group))]


def _flush(blobs: BlobStore, staged: list[int], answers: dict[int, Answer]) -> list[int]:
    """The staged photos that are durable: all of them, or none when the flush failed (each then answers why)."""
    if not staged:
        return staged
    try:
        blobs.flush()
    except (StorageFull, OSError) as exc:  # the disk full, or failing: the group's replays are answered all the same
        log.error("the blob store could not flush %d photos: %s", len(staged), exc)
        answers.update((n, exc) for n in staged)
        return []
    return staged


def _insert(
    session: Session, photos: list[jobs.NewPhoto], staged: list[int], answers: dict[int, Answer]
) -> list[str | None]:
    """The new jobs' ids (None where the key was taken meanwhile); none when the database is out of space, each
    photo answering StorageFull (its file stays until the orphan sweep)."""
    try:
        return jobs.insert_jobs(session, photos, queued=True)
    except DBAPIError as exc:
        if not disk_full(exc):
            raise
        session.rollback()
        log.error("the database is full: %d photos refused: %s", len(photos), exc.orig)
        full = StorageFull(FULL)
        answers.update((n, full) for n in staged)
        return [None] * len(photos)


def _publish(session: Session, publisher: Publisher, photos: list[tuple[str, str]]) -> JobStatus:
    """Send the new jobs' messages over one connection; the status they are answered with."""
    if publisher.publish_photos(photos):
        return JobStatus.QUEUED
    log.warning("%d jobs left for the sweeper: the broker did not take them", len(photos))
    try:
        jobs.unqueue(session, [job_id for job_id, _ in photos])
    except DBAPIError as exc:  # durable all the same: the sweeper sends them once they look stale
        session.rollback()
        log.warning("%d jobs stay 'queued' without a message: %s", len(photos), exc)
    return JobStatus.RECEIVED


def accept_photos(
    session: Session, blobs: BlobStore, publisher: Publisher, uploads: Sequence[Arrival], max_pixels: int
) -> list[Answer]:
    """Check and store a group of uploads in this thread (`check_photo`, then `store_photos`): per upload its
    answer, in order."""
    answers: list[Answer | None] = [None] * len(uploads)
    checked: list[tuple[int, Checked]] = []
    for n, upload in enumerate(uploads):
        try:
            checked.append((n, check_photo(upload, max_pixels)))
        except BadInput as exc:
            answers[n] = exc
    stored = store_photos(session, blobs, publisher, [item for _, item in checked])
    for (n, _), answer in zip(checked, stored, strict=True):
        answers[n] = answer
    assert all(answer is not None for answer in answers)
    return cast(list[Answer], answers)


class GroupIntake:
    """Group commit for uploads. Each photo is checked as it arrives (the decode: up to a second for a large PNG,
    off the GIL while Pillow decodes) by a pool of `check_threads` threads, or, when it decodes more than
    LARGE_PIXELS, by a pool of `large_check_threads` of its own, so that a large photo never waits in front of a
    phone's; the pools' sizes bound the memory checks take. One writer thread per API process takes every checked
    photo that waits and stores them together (`store_photos`), so concurrent uploads share one flush of the disk,
    one commit and one connection to the broker. The writer only writes: before, it checked each photo of its group
    itself, and six 7000x7000 PNGs (1.2 s and 191 MB each) delayed a normal photo's answer from 0.13 to 5.7 s
    (bench/intake_isolation.py). Each request awaits its own answer. With a commit (an fsync of SQLite's log, taken
    in turn by the API processes) per upload, SQLite took at most ~250 uploads a second on this disk
    (bench/upload_api.py). A group waits for nothing: it is whatever was checked during the group before it."""

    def __init__(
        self, session: Callable[[], Session], blobs: BlobStore, publisher: Publisher, max_pixels: int,
        check_threads: int = 2, large_check_threads: int = 1, max_group: int = 64,
    ) -> None:  # fmt: skip
        self._session, self._blobs, self._publisher = session, blobs, publisher
        self._max_pixels, self._threads, self._max_group = max_pixels, (check_threads, large_check_threads), max_group
        self._waiting: queue.SimpleQueue[tuple[Checked, Future[Accepted]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._checks: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None  # a phone's photos, large ones

    def submit(self, upload: Arrival) -> Future[Accepted]:
        """The upload's answer, once its group is durable (or the error that refused it)."""
        answer: Future[Accepted] = Future()
        with self._lock:
            if self._writer is None or self._checks is None:  # started on first use: after uvicorn's fork
                phones, large = self._threads
                self._checks = (ThreadPoolExecutor(phones, thread_name_prefix="photo-check"),
                                ThreadPoolExecutor(large, thread_name_prefix="large-photo-check"))  # fmt: skip
                self._writer = threading.Thread(target=self._write, name="group-intake", daemon=True)
                self._writer.start()
            self._checks[0].submit(self._sort, upload, answer, self._checks[1])
        return answer

    @property
    def waiting(self) -> int:
        """Photos checked and waiting for the writer."""
        return self._waiting.qsize()

    def close(self) -> None:
        """Accept what is being checked and what is waiting, then stop the threads."""
        with self._lock:
            writer, checks = self._writer, self._checks
            self._writer = self._checks = None
        for pool in checks or ():
            pool.shutdown(wait=True)  # in turn: a phone's photos pass large ones on; all reach the writer's queue
        if writer is not None:
            self._waiting.put(None)
            writer.join()

    def _sort(self, upload: Arrival, answer: Future[Accepted], large: ThreadPoolExecutor) -> None:
        """Check a photo of a phone's size here, and pass a large one on (its header says which)."""
        if pixels_to_check(upload.data) > LARGE_PIXELS:
            large.submit(self._check, upload, answer)
        else:
            self._check(upload, answer)

    def _check(self, upload: Arrival, answer: Future[Accepted]) -> None:
        try:
            checked = check_photo(upload, self._max_pixels)
        except Exception as exc:  # refused (BadInput), or a bug: the request answers with it either way
            answer.set_exception(exc)
            return
        self._waiting.put((checked, answer))

    def _write(self) -> None:
        while True:
            group, stopping = self._next_group()
            if group:
                self._accept(group)
            if stopping:
                return

    def _next_group(self) -> tuple[list[tuple[Checked, Future[Accepted]]], bool]:
        group: list[tuple[Checked, Future[Accepted]]] = []
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

    def _accept(self, group: list[tuple[Checked, Future[Accepted]]]) -> None:
        session = self._session()
        try:
            answers = store_photos(session, self._blobs, self._publisher, [checked for checked, _ in group])
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

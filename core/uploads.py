"""Resumable uploads (tus 1.0): an upload's state lives in the database and the bytes received so far in the blob
store, so any API process on any machine (sharing the blob store) can take the next chunk, and a crash loses at most
the chunk that was in flight.

Each PATCH's bytes (or as many as arrived before its connection dropped) are a part file of their own under a random
key, written as they arrive and on disk before the row naming it commits. That row and the offset moving past it are
one short transaction (a compare-and-set on `received`), so two requests racing for the same offset cannot both land
(the loser removes its own file), and a chunk is never half stored. When the last byte is in, the photo goes through
the same acceptance as a one-request upload, and the parts are deleted. A crash between writing a part and its
commit leaves a file no row names: retention deletes those once they are ORPHAN_AFTER old (`orphan_parts`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import CursorResult, delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import jobs
from core.blobs import KEY_PATTERN, BlobStore, room_to_write
from schemas.errors import OffsetConflict
from schemas.tables import Upload, UploadChunk, utcnow

log = logging.getLogger(__name__)

PARTS = "parts"  # the blob store's folder of part files
PART_SUFFIX = ".part"
# A part file no row names, this old, is a crash's leftover. Generous: a part is touched as it is kept, and its row
# commits a moment later; only a PATCH stalled without a byte for this long would lose its unfinished part.
ORPHAN_AFTER = timedelta(hours=1)
KEYS_PER_QUERY = 500


class Part:
    """The bytes of one PATCH on their way into the blob store, under a random key of their own: written as they
    arrive, then kept (durably) or discarded. A full disk is StorageFull, the part discarded."""

    def __init__(self, blobs: BlobStore) -> None:
        self.key = BlobStore.key_for(PARTS, secrets.token_hex(32), PART_SUFFIX)
        self._file = blobs.writer(self.key)

    @property
    def size(self) -> int:
        return self._file.size

    def write(self, data: bytes) -> None:
        try:
            with room_to_write():
                self._file.write(data)
        except BaseException:
            self._file.discard()
            raise

    def keep(self) -> None:
        with room_to_write():
            self._file.keep()

    def discard(self) -> None:
        self._file.discard()


def find_upload(session: Session, upload_id: str, device_id: int) -> Upload | None:
    """The device's own upload; another device's is as good as missing."""
    upload = session.get(Upload, upload_id)
    return upload if upload is not None and upload.device_id == device_id else None


def known_key(session: Session, device_id: int, key: str) -> bool:
    """Whether this key started an upload, or was accepted as a photo, before: creating it again finds that."""
    statement = select(Upload.id).where(Upload.device_id == device_id, Upload.idempotency_key == key)
    return session.exec(statement).first() is not None or jobs.find_job(session, device_id, key) is not None


def open_uploads(session: Session, device_id: int, now: datetime | None = None) -> tuple[int, int]:
    """The device's unfinished, unexpired uploads: how many, and the bytes they declared together."""
    statement = select(func.count(), func.coalesce(func.sum(Upload.length), 0)).where(
        Upload.device_id == device_id, col(Upload.job_id).is_(None), col(Upload.expires_at) > (now or utcnow())
    )
    count, declared = session.exec(statement).one()
    return int(count), int(declared)


def create_upload(
    session: Session, device_id: int, key: str, length: int, meta: dict[str, str], lifetime: timedelta
) -> tuple[Upload, bool]:
    """A new upload for this key, or the one made for it before (and False). A key whose photo was already accepted
    (as one request, or by an upload since removed) gets an upload that is complete from the start."""
    existing = session.exec(select(Upload).where(Upload.device_id == device_id, Upload.idempotency_key == key)).first()
    if existing is not None:
        return existing, False
    now = utcnow()
    upload = Upload(device_id=device_id, idempotency_key=key, length=length, meta=meta, created_at=now,
                    expires_at=now + lifetime)  # fmt: skip
    job = jobs.find_job(session, device_id, key)
    if job is not None:
        upload.received, upload.job_id = upload.length, job.id
    session.add(upload)
    try:
        session.commit()
    except IntegrityError:  # a concurrent creation with the same key committed first
        session.rollback()
        return create_upload(session, device_id, key, length, meta, lifetime)
    return upload, True


def append_part(session: Session, blobs: BlobStore, upload: Upload, offset: int, part: Part) -> int:
    """Keep `part` at `offset` and move the upload past it, both or neither; the new offset. An empty part is
    nothing to keep."""
    if offset != upload.received:
        part.discard()
        raise OffsetConflict
    if not part.size:
        return offset
    part.keep()  # on disk before the row that names it commits
    try:
        session.add(UploadChunk(upload_id=upload.id, start=offset, size_bytes=part.size, key=part.key))
        session.flush()
        moved = cast(
            CursorResult[tuple[()]],
            session.exec(
                update(Upload)
                .where(col(Upload.id) == upload.id, col(Upload.received) == offset)
                .values(received=offset + part.size)
            ),
        )
        if moved.rowcount != 1:
            raise OffsetConflict
        session.commit()
    except (IntegrityError, OffsetConflict):  # a concurrent request stored this offset first: this part is not kept
        session.rollback()
        remove_files(blobs, [part.key])
        raise OffsetConflict from None
    # Any other error (the database away) may have committed or not: the file stays, and goes as an orphan if not.
    session.refresh(upload)
    return upload.received


def assemble(session: Session, blobs: BlobStore, upload: Upload) -> bytes:
    """The upload's bytes, from its part files (and from the rows of chunks stored before migration 0004)."""
    statement = select(UploadChunk).where(UploadChunk.upload_id == upload.id).order_by(col(UploadChunk.start))
    pieces: list[bytes] = []
    offset = 0
    for chunk in session.exec(statement):
        piece = blobs.get(chunk.key) if chunk.key is not None else chunk.data or b""
        if chunk.start != offset or len(piece) != chunk.size_bytes:  # cannot happen while the offset moves with them
            raise RuntimeError(f"upload {upload.id}: chunk at {chunk.start} ({len(piece)} bytes), expected {offset}")
        pieces.append(piece)
        offset += len(piece)
    if offset != upload.length:
        raise RuntimeError(f"upload {upload.id}: {offset} bytes stored, {upload.length} expected")
    return b"".join(pieces)


def _part_keys(session: Session, upload_ids: list[str]) -> list[str]:
    statement = select(UploadChunk.key).where(col(UploadChunk.upload_id).in_(upload_ids))
    return [key for key in session.exec(statement) if key is not None]


def complete(session: Session, blobs: BlobStore, upload: Upload, job_id: str) -> None:
    """Record the job the upload became, and free its chunks: rows, then files."""
    keys = _part_keys(session, [upload.id])
    session.exec(delete(UploadChunk).where(col(UploadChunk.upload_id) == upload.id))
    upload.job_id = job_id
    session.add(upload)
    session.commit()
    remove_files(blobs, keys)


def remove(session: Session, blobs: BlobStore, upload_ids: Iterable[str]) -> int:
    """Drop uploads with their chunks: rows, then files (a crash between leaves orphans, which retention finds)."""
    ids = list(upload_ids)
    if not ids:
        return 0
    keys = _part_keys(session, ids)
    session.exec(delete(UploadChunk).where(col(UploadChunk.upload_id).in_(ids)))
    removed = cast(CursorResult[tuple[()]], session.exec(delete(Upload).where(col(Upload.id).in_(ids))))
    session.commit()
    remove_files(blobs, keys)
    return removed.rowcount


def remove_files(blobs: BlobStore, keys: Iterable[str]) -> int:
    """Delete part files, those already gone and those that cannot be deleted (logged) aside; the bytes freed."""
    freed = 0
    for key in keys:
        try:
            freed += blobs.remove(key) or 0
        except OSError as exc:  # left for the orphan sweep
            log.warning("could not delete upload part %s: %s", key, exc)
    return freed


def expired(upload: Upload, now: datetime | None = None) -> bool:
    """An unfinished upload past its time; a finished one stays readable (its job id) until the sweeper drops it."""
    return upload.job_id is None and upload.expires_at <= (now or utcnow())


def remove_expired(session: Session, blobs: BlobStore, now: datetime | None = None) -> int:
    ids = session.exec(select(Upload.id).where(col(Upload.expires_at) <= (now or utcnow())))
    return remove(session, blobs, list(ids))


def _aged_files(blobs: BlobStore, before: datetime) -> Iterator[Path]:
    folder = blobs.root / PARTS
    for path in sorted(folder.glob("*/*")) if folder.is_dir() else []:
        try:
            aged = path.is_file() and path.stat().st_mtime < before.timestamp()
        except FileNotFoundError:  # deleted meanwhile
            continue
        if aged:
            yield path


def orphan_parts(session: Session, blobs: BlobStore, now: datetime, limit: int | None = None) -> list[Path]:
    """Part files no chunk row names, written over ORPHAN_AFTER before `now` (a crash between writing a part and its
    commit; a body cut off in the middle of being written, by a crash); at most `limit`."""
    found: list[Path] = []
    named: dict[str, Path] = {}

    def settle() -> None:
        kept = set(session.exec(select(UploadChunk.key).where(col(UploadChunk.key).in_(named))))
        found.extend(path for key, path in named.items() if key not in kept)
        named.clear()

    for path in _aged_files(blobs, now - ORPHAN_AFTER):
        key = path.relative_to(blobs.root).as_posix()
        if KEY_PATTERN.match(key):
            named[key] = path
        else:  # a hidden temporary file: the body of a PATCH that never finished
            found.append(path)
        if len(named) >= KEYS_PER_QUERY:
            settle()
        if limit is not None and len(found) >= limit:
            return found[:limit]
    settle()
    return found if limit is None else found[:limit]

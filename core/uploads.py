"""Resumable uploads (tus 1.0): an upload's state and the chunks received so far live in the database, so any API
process on any machine can take the next chunk, and a crash loses at most the chunk that was in flight.

Every change is one short transaction: a chunk is stored only together with the offset moving past it (a
compare-and-set on `received`), so two requests racing for the same offset cannot both land, and a chunk is never
half stored. When the last byte is in, the photo goes through the same acceptance as a one-request upload.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import jobs
from schemas.errors import OffsetConflict
from schemas.tables import Upload, UploadChunk, utcnow


def find_upload(session: Session, upload_id: str, device_id: int) -> Upload | None:
    """The device's own upload; another device's is as good as missing."""
    upload = session.get(Upload, upload_id)
    return upload if upload is not None and upload.device_id == device_id else None


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


def append_chunk(session: Session, upload: Upload, offset: int, data: bytes) -> int:
    """Store `data` at `offset` and move the upload past it, both or neither; the new offset."""
    if offset != upload.received:
        raise OffsetConflict
    if not data:
        return offset
    try:
        session.add(UploadChunk(upload_id=upload.id, start=offset, data=data))
        session.flush()
        moved = cast(
            CursorResult[tuple[()]],
            session.exec(
                update(Upload)
                .where(col(Upload.id) == upload.id, col(Upload.received) == offset)
                .values(received=offset + len(data))
            ),
        )
        if moved.rowcount != 1:
            raise OffsetConflict
        session.commit()
    except (IntegrityError, OffsetConflict):  # a concurrent request stored this offset first
        session.rollback()
        raise OffsetConflict from None
    session.refresh(upload)
    return upload.received


def assemble(session: Session, upload: Upload) -> bytes:
    statement = select(UploadChunk).where(UploadChunk.upload_id == upload.id).order_by(col(UploadChunk.start))
    chunks = session.exec(statement)
    data = b"".join(chunk.data for chunk in chunks)
    if len(data) != upload.length:  # cannot happen while every chunk moves the offset by its own length
        raise RuntimeError(f"upload {upload.id}: {len(data)} bytes stored, {upload.length} expected")
    return data


def complete(session: Session, upload: Upload, job_id: str) -> None:
    """Record the job the upload became and free its chunks."""
    session.exec(delete(UploadChunk).where(col(UploadChunk.upload_id) == upload.id))
    upload.job_id = job_id
    session.add(upload)
    session.commit()


def remove(session: Session, upload_ids: Iterable[str]) -> int:
    ids = list(upload_ids)
    if not ids:
        return 0
    session.exec(delete(UploadChunk).where(col(UploadChunk.upload_id).in_(ids)))
    removed = cast(CursorResult[tuple[()]], session.exec(delete(Upload).where(col(Upload.id).in_(ids))))
    session.commit()
    return removed.rowcount


def expired(upload: Upload, now: datetime | None = None) -> bool:
    """An unfinished upload past its time; a finished one stays readable (its job id) until the sweeper drops it."""
    return upload.job_id is None and upload.expires_at <= (now or utcnow())


def remove_expired(session: Session, now: datetime | None = None) -> int:
    ids = session.exec(select(Upload.id).where(col(Upload.expires_at) <= (now or utcnow())))
    return remove(session, list(ids))

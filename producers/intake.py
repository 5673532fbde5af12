"""Accepting a photo: validate, store the bytes, commit the job, then enqueue. Accepted means durable: the photo
and the job row are on disk (fsynced) before anything is sent, and a job the broker did not take waits for the
sweeper. The row is committed as `queued` in the same write that creates it: one commit per upload. If the API
process dies between that commit and the send, the sweeper re-sends the job after MHOGO_SWEEP_STALE_AFTER_S."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from sqlmodel import Session

from core import jobs
from core.blobs import BlobStore
from core.errors import BadInput, BrokerUnavailable, IdempotencyConflict, UnsupportedMediaType
from ml.imaging import validate
from producers.publisher import Publisher
from schemas.tables import Device, Job, JobStatus

log = logging.getLogger(__name__)

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
ACCEPTED_DECLARED_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream"}
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as an sf-string carries it


class MissingIdempotencyKey(BadInput):
    pass


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


def replay(existing: Job, sha256: str) -> Accepted:
    if existing.content_sha256 != sha256:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different photo. Use a new key for each new photo."
        )
    return Accepted(existing.id, existing.status, replayed=True)


def accept_photo(
    session: Session, blobs: BlobStore, publisher: Publisher, device: Device, key: str, data: bytes, max_pixels: int
) -> Accepted:
    assert device.id is not None
    sha256 = hashlib.sha256(data).hexdigest()
    # No lookup of the key first: most uploads are new, and a replay finds its job when the insert hits the key.
    fmt, _ = validate(data, max_pixels)
    blob_key = blobs.key_for("photos", sha256, SUFFIXES[fmt])
    blobs.put_at(blob_key, data)
    photo = jobs.NewPhoto(device.id, key, sha256, blob_key, MEDIA_TYPES[fmt], len(data))
    job_id = jobs.insert_job(session, photo, queued=True)
    if job_id is None:  # the key was used before (a retry), or by a concurrent request that committed first
        existing = jobs.find_job(session, device.id, key)
        assert existing is not None
        return replay(existing, sha256)
    try:
        publisher.publish_photo(job_id, blob_key)
    except BrokerUnavailable as exc:
        log.warning("job %s left for the sweeper: %s", job_id, exc)
        jobs.unqueue(session, job_id)
        return Accepted(job_id, JobStatus.RECEIVED, replayed=False)
    return Accepted(job_id, JobStatus.QUEUED, replayed=False)

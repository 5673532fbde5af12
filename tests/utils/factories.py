"""Factories for test data: devices, jobs, and photos in the shapes the API must handle."""

from __future__ import annotations

import hashlib
import io
import struct
import uuid
import zlib
from pathlib import Path

from PIL import Image
from sqlmodel import Session

from core import jobs, uploads
from core.blobs import BlobStore
from core.devices import add_device
from core.feedback import agronomist_label
from schemas.tables import Device, FeedbackSource, Job, Role, Upload, User, utcnow
from schemas.tasks import FeedbackEvent

SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"


def sample_photo(kind: str = "cmd", index: int = 0) -> Path:
    folder = SAMPLES / "negatives" if kind == "negatives" else SAMPLES / "cassava" / kind
    return sorted(folder.glob("*.jpg"))[index]


def sample_bytes(kind: str = "cmd", index: int = 0) -> bytes:
    return sample_photo(kind, index).read_bytes()


def all_samples() -> list[Path]:
    return sorted(SAMPLES.glob("cassava/*/*.jpg")) + sorted(SAMPLES.glob("negatives/*.jpg"))


def make_device(session: Session, name: str = "phone") -> tuple[Device, str]:
    return add_device(session, name)


def create_job(session: Session, photo: jobs.NewPhoto) -> tuple[Job, bool]:
    """The job of `photo` as the intake stores it (`jobs.insert_jobs`), and whether it is new: the row made now, or
    the one that had the key first."""
    job_id = jobs.insert_jobs(session, [photo])[0]
    job = session.get(Job, job_id) if job_id else jobs.find_job(session, photo.device_id, photo.idempotency_key)
    assert job is not None
    return job, job_id is not None


def make_job(session: Session, device: Device, key: str = "k1", data: bytes = b"photo") -> Job:
    assert device.id is not None
    sha = hashlib.sha256(data).hexdigest()
    photo = jobs.NewPhoto(device.id, key, sha, f"photos/{sha[:2]}/{sha}.jpg", "image/jpeg", len(data))
    job, created = create_job(session, photo)
    assert created
    return job


def add_chunk(session: Session, blobs: BlobStore, upload: Upload, offset: int, data: bytes) -> int:
    """Store `data` at `offset` of a resumable upload as a PATCH does (a part file, then its row); the new offset."""
    part = uploads.Part(blobs)
    part.write(data)
    return uploads.append_part(session, blobs, upload, offset, part)


def part_files(blobs: BlobStore) -> dict[str, bytes]:
    """The part files of resumable uploads in the blob store (hidden temporary ones too), by path under it."""
    return {path.relative_to(blobs.root).as_posix(): path.read_bytes()
            for path in sorted((blobs.root / uploads.PARTS).glob("*/*"))}  # fmt: skip


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG that claims width x height 1-bit pixels: kilobytes on the wire, 400 MP once decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    data = zlib.compress(row * height, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def label_event(
    job_id: str, label: str, source: FeedbackSource = FeedbackSource.FARMER, device_id: int | None = None
) -> FeedbackEvent:
    """Feedback as it reaches the events queue: a farmer's from the API, with the device whose token sent it (None:
    a message from before events carried it), or an agronomist's from core.feedback, with who gave it."""
    if source == FeedbackSource.AGRONOMIST:
        return agronomist_label(job_id, label, "agronomist in tests")
    return FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job_id, label=label, source=source, device_id=device_id,
                         created_at=utcnow())  # fmt: skip


def finished_job(
    session: Session,
    blobs: BlobStore,
    device: Device,
    key: str,
    probabilities: dict[str, float] | None = None,
    leaf: float | None = None,
    rejected: bool = False,
    data: bytes | None = None,
) -> Job:
    """A job the worker finished: its photo (a real sample unless `data`) in the blob store, classified with these
    probabilities (or turned away as not a cassava leaf), its leaf-gate score kept, as the worker keeps it."""
    from schemas.reasons import RejectReason
    from schemas.statuses import JobStatus

    kinds = ("cbb", "cbsd", "cgm", "cmd", "healthy")
    n = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 50  # photos for different keys differ, mostly
    photo = data if data is not None else sample_bytes(kinds[n % 5], n // 5)
    job = make_job(session, device, key, photo)
    blobs.put("photos", photo, ".jpg")
    job.blob_key = blobs.key_for("photos", job.content_sha256, ".jpg")
    if rejected:
        job.status, job.reason_code, job.reason = JobStatus.REJECTED, RejectReason.NOT_CASSAVA_LEAF, "not a leaf"
    else:
        probabilities = probabilities or {"cmd": 0.9, "healthy": 0.05, "cbb": 0.05}
        label = max(probabilities, key=lambda name: probabilities[name])
        job.status, job.label, job.confidence = JobStatus.CLASSIFIED, label, probabilities[label]
        job.probabilities, job.model_version = probabilities, "v1"
    job.input_stats = {"leaf_probability": leaf} if leaf is not None else {}
    job.finished_at = utcnow()
    session.add(job)
    session.commit()
    return job


def make_person(session: Session, name: str, role: str = "agronomist") -> tuple[User, str]:
    """A person with a login (password "password of <name>") and an API token."""
    from core.users import add_user, issue_token

    user = add_user(session, name, Role(role), f"password of {name}")
    return user, issue_token(session, user)

"""The retention task as the events worker runs it, on the test MHOGO_HOME's database and the real Redis: one pass
at a time across workers (the lock the sweeper and the tick take too), and a pass that deletes a photo past its time."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update
from sqlmodel import Session, col

from core import jobs
from core.blobs import BlobStore
from core.config import settings
from core.db import open_database
from core.deliveries import DeliveryCounter
from schemas.findings import Finding
from schemas.tables import Job, utcnow
from tests.utils.factories import make_device
from tests.utils.processes import ensure_default_redis
from workers.base import MhogoTask
from workers.events import apply_retention


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    ensure_default_redis()
    client = redis.Redis.from_url(settings.REDIS_URL)
    MhogoTask._deliveries = DeliveryCounter(client, apply_retention.namespace.deliveries)
    yield client
    MhogoTask._deliveries = None
    client.close()


def old_photo(session: Session, blobs: BlobStore) -> Job:
    device, _ = make_device(session)
    assert device.id is not None
    data = uuid.uuid4().bytes
    key = blobs.put("photos", data, ".jpg")
    new = jobs.NewPhoto(device.id, uuid.uuid4().hex, hashlib.sha256(data).hexdigest(), key, "image/jpeg", len(data))
    [job_id] = jobs.insert_jobs(session, [new])
    assert job_id is not None
    jobs.finish(session, job_id, Finding(label="cmd", confidence=0.9, model_version="v1"))
    age = timedelta(days=settings.PHOTO_RETENTION_DAYS + 1)
    session.execute(update(Job).where(col(Job.id) == job_id).values(created_at=utcnow() - age))
    session.commit()
    job = session.get(Job, job_id)
    assert job is not None
    return job


def test_one_retention_pass_at_a_time_across_workers(client: redis.Redis) -> None:
    blobs = BlobStore(settings.blob_dir)
    with Session(open_database(settings.database_url), expire_on_commit=False) as session:
        job = old_photo(session, blobs)
        lock = apply_retention.namespace.retention_lock  # the deployment's, under its prefix
        other_worker = client.lock(lock, timeout=60)
        assert other_worker.acquire(blocking=False)
        try:
            assert apply_retention.apply().get() == {"skipped": 1}
            assert blobs.exists(job.blob_key)
        finally:
            other_worker.release()
        done = apply_retention.apply().get()
        assert done["photos"] >= 1
        assert not blobs.exists(job.blob_key)
        tombstone = session.get(Job, job.id, populate_existing=True)
        assert tombstone is not None
        assert tombstone.photo_deleted_at is not None
        assert tombstone.label == "cmd"  # the diagnosis stays readable
        assert client.get(lock) is None  # released for the next pass

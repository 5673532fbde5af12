"""Task bodies run in-process (`apply`) on the real database and blob store of the test MHOGO_HOME, with a real
photo and the served model: the one per-photo task classifies or rejects with its reason, a redelivery after the end
changes nothing, and a poison message fails its job."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from celery import Task
from PIL import ImageEnhance
from sqlmodel import Session

from core import jobs
from core.blobs import BlobStore
from core.config import settings
from core.db import open_database
from core.deliveries import DeliveryCounter
from core.namespace import Namespace, deployment_id
from ml.checkpoint import load_checkpoint
from ml.imaging import decode
from schemas.queues import TaskName
from schemas.statuses import JobStatus
from schemas.tables import Job, new_id
from tests.utils.factories import create_job, jpeg_bytes, make_device, sample_bytes
from workers.base import MhogoTask
from workers.events import feedback
from workers.inference import diagnose


@pytest.fixture(autouse=True)
def fake_delivery_counter() -> Iterator[None]:
    MhogoTask._deliveries = DeliveryCounter(fakeredis.FakeRedis(), "mhogo:test:deliveries")
    yield
    MhogoTask._deliveries = None


@pytest.fixture
def db() -> Iterator[Session]:
    with Session(open_database(settings.database_url), expire_on_commit=False) as session:
        yield session


def new_job(db: Session, data: bytes) -> Job:
    device, _ = make_device(db)
    assert device.id is not None
    key = BlobStore(settings.blob_dir).put("photos", data, ".jpg")
    job, _ = create_job(
        db, jobs.NewPhoto(device.id, uuid.uuid4().hex, key.split("/")[2][:64], key, "image/jpeg", len(data))
    )
    return job


def status(db: Session, job_id: str) -> Job:
    job = db.get(Job, job_id, populate_existing=True)
    assert job is not None
    return job


def run(task, *args, task_id: str | None = None):
    result = task.apply(args=args, task_id=task_id or uuid.uuid4().hex)
    if result.failed():
        raise result.result
    return result.result


def test_one_task_classifies_a_real_photo_and_a_redelivery_changes_nothing(db: Session) -> None:
    job = new_job(db, sample_bytes("cmd"))
    assert run(diagnose, job.id, job.blob_key) == "stored"
    stored = status(db, job.id)
    assert stored.status == JobStatus.CLASSIFIED
    assert stored.label in {"cbb", "cbsd", "cgm", "cmd", "healthy"}
    assert sum((stored.probabilities or {}).values()) == pytest.approx(1.0, abs=1e-3)
    assert stored.model_version == load_checkpoint(settings.model_path).version
    assert (stored.input_stats or {})["luma_mean"] > 45
    assert 0 <= (stored.input_stats or {})["leaf_probability"] <= 1
    assert set(stored.timings_ms or {}) == {"decode", "prepare", "model"}
    assert run(diagnose, job.id, job.blob_key) == "already finished"  # redelivered after the end
    assert status(db, job.id).updated_at == stored.updated_at


def test_a_dark_photo_is_rejected_before_the_model(db: Session) -> None:
    dark = ImageEnhance.Brightness(decode(sample_bytes("healthy"), 10**8)).enhance(0.2)
    job = new_job(db, jpeg_bytes(dark))
    assert run(diagnose, job.id, job.blob_key) == "stored"
    stored = status(db, job.id)
    assert (stored.status, stored.reason_code, stored.label) == ("rejected", "too_dark", None)
    assert set(stored.timings_ms or {}) == {"decode", "prepare"}  # the model never ran


def test_a_damaged_blob_is_rejected_as_unreadable(db: Session) -> None:
    job = new_job(db, sample_bytes()[:2000])
    assert run(diagnose, job.id, job.blob_key) == "stored"
    assert status(db, job.id).reason_code == "unreadable"


def test_a_poison_message_fails_its_job_instead_of_looping(db: Session) -> None:
    job = new_job(db, sample_bytes())
    task_id = uuid.uuid4().hex
    for _ in range(settings.MAX_DELIVERIES):  # earlier deliveries that killed their worker
        MhogoTask._deliveries.record(task_id)  # type: ignore[union-attr]
    assert run(diagnose, job.id, job.blob_key, task_id=task_id) is None
    stored = status(db, job.id)
    assert stored.status == JobStatus.FAILED
    assert "deliveries" in (stored.reason or "")


def refusals(task: Task, args: tuple[Any, ...]) -> list[bool]:
    """Deliver the same message MHOGO_MAX_DELIVERIES times; whether each refusal gave it back to the queue."""
    task_id = uuid.uuid4().hex
    results = [task.apply(args=args, task_id=task_id) for _ in range(settings.MAX_DELIVERIES)]
    assert [result.state for result in results] == ["REJECTED"] * settings.MAX_DELIVERIES  # never SUCCESS
    return [result.result.requeue for result in results]


def set_aside(db: Session) -> list[dict[str, Any]]:
    refused = Namespace(deployment_id(db)).refused
    return [json.loads(raw) for raw in MhogoTask._deliveries.redis.lrange(refused, 0, -1)]  # type: ignore[union-attr]


def test_a_photo_task_for_a_job_the_database_does_not_know_is_refused_not_done(db: Session) -> None:
    """Before, `jobs.claim` said False for a finished job and an absent one alike, and both were acknowledged as
    "already finished": another deployment's photos on the same queue were taken and lost until its sweep."""
    unknown = new_id()
    assert refusals(diagnose, (unknown, "photos/aa/bb/x.jpg")) == [True] * (settings.MAX_DELIVERIES - 1) + [False]
    [record] = set_aside(db)
    assert (record["task"], record["args"], record["unknown"]) == (TaskName.DIAGNOSE, [unknown, "photos/aa/bb/x.jpg"],
                                                                   f"job {unknown}")  # fmt: skip


def test_feedback_for_an_unknown_job_is_refused_and_a_malformed_event_fails_alone(db: Session) -> None:
    job = new_job(db, sample_bytes())
    event = {"event_id": uuid.uuid4().hex, "job_id": "nope", "label": "cmd", "source": "farmer",
             "created_at": "2026-11-29T10:00:00Z"}  # fmt: skip
    assert refusals(feedback, (event,)) == [True] * (settings.MAX_DELIVERIES - 1) + [False]
    assert [record["unknown"] for record in set_aside(db)] == [f"job nope (feedback {event['event_id']})"]
    broken = feedback.apply(args=({"job_id": job.id, "label": 3},), task_id=uuid.uuid4().hex)
    assert broken.failed()
    assert status(db, job.id).status == JobStatus.RECEIVED  # a bad event never fails the photo's job

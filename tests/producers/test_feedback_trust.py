"""Trust comes from the credential, not from the request body (issue 23), through the real API on SQLite and
PostgreSQL: a device token is a farmer's phone, whatever the body says; one phone's labels neither fire a rule nor
train a model; an Idempotency-Key is bound to the feedback it first came with; a phone reports events about its own
jobs only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core import jobs, registry, triggers
from core.blobs import BlobStore
from core.config import Settings
from core.feedback import record_feedback
from core.retraining import build_dataset
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.findings import Finding
from schemas.labels import LABELS
from schemas.tables import Feedback, FeedbackSource, Job, ModelAliasName, ModelVersion, utcnow
from tests.producers.conftest import MAX_UPLOAD, new_token
from tests.utils.factories import all_samples, sample_photo
from tests.utils.fakes import RecordingPublisher

CHAMPION = "champion-v1"
CLASSES = [label.value for label in LABELS]
# The rule of the reproduction: the champion's accuracy on its last 30 trusted labels below 0.6.
RULES = Settings(TRIGGER_ACCURACY_LAST_N=30, TRIGGER_ACCURACY_BELOW=0.6, TRIGGER_NEW_LABELS=30)


@pytest.fixture
def services(tmp_path: Path, engine: Engine, blobs: BlobStore, publisher: RecordingPublisher) -> Services:
    config = Settings(HOME=tmp_path, MAX_UPLOAD_BYTES=MAX_UPLOAD, PUBLIC_URL="https://mhogo.example", RATE_LIMIT="")
    return Services(settings=config, engine=engine, blobs=blobs, publisher=publisher)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, sweep_on_startup=False), raise_server_exceptions=False) as client:
        yield client


def upload(client: TestClient, token: str, photo: Path) -> str:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "image/jpeg"}
    response = client.post("/v1/photos", content=photo.read_bytes(), headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def answered(services: Services, job_ids: list[str], label: str = "cmd") -> None:
    """The champion's answer on each photo (the inference worker's part, done in-process)."""
    with Session(services.engine) as session:
        session.add(ModelVersion(version=CHAMPION, sha256="0" * 64, blob_key="models/c.pt", made_by="test"))
        session.commit()
        registry.set_alias(session, ModelAliasName.CHAMPION, CHAMPION, "test")
        for job_id in job_ids:
            assert jobs.finish(session, job_id, Finding(label=label, confidence=0.9, model_version=CHAMPION))


def base_data(root: Path) -> Path:
    for name in CLASSES:
        (root / "cassava" / name).mkdir(parents=True)
        (root / "cassava" / name / f"{name}.jpg").symlink_to(sample_photo(name, 0))
    return root


def test_one_phone_s_wrong_agronomist_labels_fire_no_rule_and_train_nothing(
    client: TestClient, services: Services, publisher: RecordingPublisher, tmp_path: Path
) -> None:
    """The reproduction: one device uploaded 34 photos and sent a wrong `"source": "agronomist"` label on each; the
    accuracy rule fired (0.033 over 30 labels) and the labels went into the next training set and judged."""
    token = new_token(services, "one phone")
    auth = {"Authorization": f"Bearer {token}"}
    job_ids = [upload(client, token, photo) for photo in all_samples()[:34]]
    answered(services, job_ids)
    for job_id in job_ids:
        refused = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cgm", "source": "agronomist"},
                              headers=auth)  # fmt: skip
        assert refused.status_code == 403
        assert "agronomists' labels come from agronomists' own accounts" in refused.json()["detail"]
    assert publisher.feedback == []
    # What the phone may send, a farmer's word, it sends twice on every photo: still one farmer's.
    for job_id in job_ids * 2:
        assert client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cgm"}, headers=auth).status_code == 202
    assert len(publisher.feedback) == 68
    with Session(services.engine) as session:
        for event in publisher.feedback:  # the events worker's part
            assert (event.source, event.agronomist) == (FeedbackSource.FARMER, None)
            assert record_feedback(session, event)
        device_ids = set(session.exec(select(Feedback.device_id)).all())
        assert device_ids == {publisher.feedback[0].device_id} != {None}
        assert triggers.check_rules(session, RULES, utcnow()) is None
        config = Settings(FEEDBACK_HOLDOUT_SHARE=0.3)
        built = build_dataset(session, services.blobs, config, base_data(tmp_path / "base"), tmp_path / "run", None)
    assert (built.added, built.held_out, built.eval_dir) == (0, 0, None)
    assert built.left_out == {"no trusted label (one farmer's word, or farmers disagree)": 34}


def test_the_event_carries_the_farmer_and_the_device_the_credential_says(
    client: TestClient, services: Services, publisher: RecordingPublisher
) -> None:
    token = new_token(services)
    job_id = upload(client, token, sample_photo("cmd"))
    answered(services, [job_id])
    for body in ({"label": "cbsd"}, {"label": "cbsd", "source": "farmer"}):
        response = client.post(f"/v1/jobs/{job_id}/feedback", json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202
    with Session(services.engine) as session:
        device = session.exec(select(Job.device_id).where(col(Job.id) == job_id)).one()
    assert [(e.source, e.device_id, e.agronomist) for e in publisher.feedback] == [(FeedbackSource.FARMER, device,
                                                                                    None)] * 2  # fmt: skip


def test_an_idempotency_key_reused_for_other_feedback_is_refused(
    client: TestClient, services: Services, publisher: RecordingPublisher
) -> None:
    """The event id was uuid5(job, key): a second label under the same key was taken (202) and then dropped by the
    worker as a duplicate of the first, and the phone never knew."""
    token = new_token(services)
    job_id = upload(client, token, sample_photo("cmd"))
    answered(services, [job_id])
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "fb-1"}
    first = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cbsd", "comment": "streaks"}, headers=headers)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    for other in ({"label": "cgm", "comment": "streaks"}, {"label": "cbsd"}, {"label": "cbsd", "comment": "x"}):
        reused = client.post(f"/v1/jobs/{job_id}/feedback", json=other, headers=headers)
        assert reused.status_code == 422
        assert "sent before with other feedback" in reused.json()["detail"]
    again = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cbsd", "comment": "streaks"}, headers=headers)
    assert (again.status_code, again.json(), again.headers["Idempotent-Replayed"]) == (202, first.json(), "true")
    assert [(e.event_id, e.label) for e in publisher.feedback] == [(first.json()["event_id"], "cbsd")] * 2
    bad_key = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cgm"},
                          headers={**headers, "Idempotency-Key": "k" * 256})  # fmt: skip
    assert bad_key.status_code == 400
    assert "1 to 255 visible ASCII characters" in bad_key.json()["detail"]


def test_an_event_naming_another_phone_s_job_is_refused(
    client: TestClient, services: Services, publisher: RecordingPublisher
) -> None:
    mine, theirs = new_token(services, "mine"), new_token(services, "theirs")
    my_job, their_job = upload(client, mine, sample_photo("cmd")), upload(client, theirs, sample_photo("cbb"))

    def report(job_id: str | None, n: int) -> dict[str, object]:
        return {"event_id": f"phone-event-{n:04d}", "kind": "upload_retried", "at": utcnow().isoformat(),
                "job_id": job_id}  # fmt: skip

    auth = {"Authorization": f"Bearer {mine}"}
    for stranger in (their_job, "0" * 32):  # another phone's job, and one that does not exist, alike
        refused = client.post("/v1/events", json=[report(my_job, 1), report(stranger, 2)], headers=auth)
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith("1 event(s) name a job that is not one of this phone's: "
                                                   "phone-event-0002.")  # fmt: skip
    assert publisher.client_events == []
    taken = client.post("/v1/events", json=[report(my_job, 1), report(None, 2)], headers=auth)
    assert taken.status_code == 202
    [batch] = publisher.client_events
    assert [e.job_id for e in batch.events] == [my_job, None]

"""GET /v1/jobs/{id}, POST /v1/jobs/{id}/feedback and /healthz."""

import dataclasses

import redis
from fastapi.testclient import TestClient
from sqlmodel import Session

from core import jobs
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.findings import Finding
from schemas.labels import LABEL_INFO, Label
from schemas.reasons import RejectReason
from tests.producers.conftest import new_token
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher

PROBS = {"cbb": 0.05, "cbsd": 0.05, "cgm": 0.1, "cmd": 0.7, "healthy": 0.1}


def submit(client: TestClient, auth: dict[str, str], key: str = "k", kind: str = "cmd") -> str:
    headers = {**auth, "Idempotency-Key": key, "Content-Type": "image/jpeg"}
    response = client.post("/v1/photos", content=sample_bytes(kind), headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def finish(services: Services, job_id: str, finding: Finding) -> None:
    with Session(services.engine) as session:
        assert jobs.finish(session, job_id, finding)


def test_classified_job_shows_the_diagnosis(client: TestClient, auth: dict[str, str], services: Services) -> None:
    job_id = submit(client, auth)
    finding = Finding(label="cmd", confidence=0.7, probabilities=PROBS, model_version="lite0-test",
                      timings_ms={"decode": 5.0, "model": 40.0})  # fmt: skip
    finish(services, job_id, finding)
    body = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert body["status"] == "classified"
    result = body["result"]
    assert (result["label_id"], result["label"], result["name"]) == (3, "cmd", "Cassava Mosaic Disease")
    assert result["confidence"] == 0.7
    assert result["probabilities"] == PROBS
    assert result["model_version"] == "lite0-test"
    assert result["advice"] == LABEL_INFO[Label.CMD].advice
    assert body["timings_ms"]["decode"] == 5.0
    assert body["timings_ms"]["model"] == 40.0
    assert body["timings_ms"]["end_to_end"] >= 0
    assert body["rejection"] is None
    assert body["finished_at"] is not None


def test_rejected_job_shows_the_reason(client: TestClient, auth: dict[str, str], services: Services) -> None:
    job_id = submit(client, auth)
    finish(services, job_id, Finding(reason=RejectReason.TOO_DARK))
    body = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert body["status"] == "rejected"
    assert body["rejection"] == {"reason": "too_dark", "message": RejectReason.TOO_DARK.message}
    assert body["result"] is None


def test_pending_and_failed_jobs(client: TestClient, auth: dict[str, str], services: Services) -> None:
    job_id = submit(client, auth)
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "queued"
    with Session(services.engine) as session:
        jobs.fail(session, job_id, "boom")
    body = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert body["status"] == "failed"
    assert "send it again" in body["error"]


def test_a_device_sees_only_its_own_jobs(client: TestClient, auth: dict[str, str], services: Services) -> None:
    job_id = submit(client, auth)
    other = {"Authorization": f"Bearer {new_token(services, 'other')}"}
    assert client.get(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    feedback = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cmd"}, headers=other)
    assert feedback.status_code == 404
    assert client.get("/v1/jobs/does-not-exist", headers=auth).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}").status_code == 401


def test_feedback_goes_to_the_queue(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    job_id = submit(client, auth)
    early = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cbsd"}, headers=auth)
    assert early.status_code == 409
    finish(services, job_id, Finding(label="cmd", model_version="v"))
    body = {"label": "cbsd", "comment": "streaks on the stem"}
    response = client.post(f"/v1/jobs/{job_id}/feedback", json=body, headers=auth)
    assert response.status_code == 202
    [event] = publisher.feedback
    assert (event.job_id, event.label, event.source, event.comment) == (job_id, "cbsd", "farmer", body["comment"])
    assert response.json() == {"event_id": event.event_id, "status": "queued"}


def test_feedback_retries_with_a_key_are_one_event(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    job_id = submit(client, auth)
    finish(services, job_id, Finding(label="cmd", model_version="v"))
    headers = {**auth, "Idempotency-Key": "fb-1"}
    ids = {client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cmd"}, headers=headers).json()["event_id"]
           for _ in range(3)}  # fmt: skip
    assert len(ids) == 1
    assert len({e.event_id for e in publisher.feedback}) == 1


def test_bad_feedback_is_422_and_broker_down_is_503(
    client: TestClient, auth: dict[str, str], services: Services, publisher: RecordingPublisher
) -> None:
    job_id = submit(client, auth)
    finish(services, job_id, Finding(label="cmd", model_version="v"))
    for body in ({"label": "banana"}, {"label": "cmd", "source": "neighbour"}, {"comment": "no label"}):
        assert client.post(f"/v1/jobs/{job_id}/feedback", json=body, headers=auth).status_code == 422
    bad_json = client.post(
        f"/v1/jobs/{job_id}/feedback", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422
    publisher.down = True
    response = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": "cmd"}, headers=auth)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


def test_health_checks_database_and_broker(client: TestClient, publisher: RecordingPublisher) -> None:
    space = {"blob_store_space": "ok", "database_space": "ok"}
    ok = client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json()["status"] == "ok"
    assert ok.json()["checks"] == {"database": "ok", "redis": "ok"} | space
    publisher.down = True
    down = client.get("/healthz")
    assert down.status_code == 503
    assert down.json()["status"] == "degraded"
    assert down.json()["checks"] == {"database": "ok", "redis": "unavailable"} | space


def test_health_tells_anyone_what_is_down_but_not_where(services: Services) -> None:
    """/healthz needs no login (load balancers ask it): its answer once carried the error's text, with the internal
    host and port of the machine that was down."""

    class Unreachable(RecordingPublisher):
        def ping(self) -> None:
            raise redis.ConnectionError("Error 111 connecting to redis-7.internal.example:6380. Connection refused.")

    with TestClient(create_app(dataclasses.replace(services, publisher=Unreachable()), sweep_on_startup=False)) as api:
        answer = api.get("/healthz")
    assert answer.status_code == 503
    assert "internal.example" not in answer.text
    assert "6380" not in answer.text

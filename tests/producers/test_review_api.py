"""The review API through the app (producers/api/review.py): what an agronomist is handed, what they may answer, and
the model's answer appearing only once they have answered."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from core import review
from core.labels import history
from producers.api.deps import Services
from schemas.tables import FeedbackSource
from tests.utils.factories import finished_job, make_device, make_person, sample_bytes
from tests.utils.fakes import RecordingPublisher


def queue_two(services: Services) -> tuple[str, str]:
    with Session(services.engine) as session:
        device = make_device(session)[0]
        unsure = finished_job(session, services.blobs, device, "unsure", {"cmd": 0.5, "cbsd": 0.45, "cgm": 0.05},
                              data=sample_bytes("cmd", 1))  # fmt: skip
        other = finished_job(session, services.blobs, device, "other", {"cbb": 0.52, "cbsd": 0.4, "cgm": 0.08},
                             data=sample_bytes("cbb", 2))  # fmt: skip
        review.refresh(session, services.settings)
        return unsure.id, other.id


def agronomist(services: Services, name: str = "amina") -> dict[str, str]:
    with Session(services.engine) as session:
        return {"Authorization": f"Bearer {make_person(session, name)[1]}"}


def test_next_hides_the_model_and_the_answer_shows_it(
    client: TestClient, services: Services, publisher: RecordingPublisher
) -> None:
    unsure, _ = queue_two(services)
    auth = agronomist(services)
    item = client.get("/v1/review/next", headers=auth).json()
    assert set(item) == {"item_id", "job_id", "photo_url", "reasons", "adjudication", "counts"}
    assert item["job_id"] == unsure  # the closer call first
    assert item["reasons"][0]["code"] == "unsure"
    said = " ".join(reason["detail"] for reason in item["reasons"]).upper()
    assert not any(name in said for name in ("CMD", "CBSD", "CGM", "CBB", "HEALTHY"))  # nobody's answer, before hers
    assert item["counts"] == {"left_for_you": 2, "open": 2, "adjudication": 0}
    photo = client.get(item["photo_url"], headers=auth)
    assert (photo.status_code, photo.content) == (200, sample_bytes("cmd", 1))
    answer = client.post(f"/v1/review/{item['item_id']}", json={"label": "cbsd"}, headers=auth).json()
    assert answer["status"] == "done"
    assert answer["model"]["label"] == "cmd"
    assert answer["model"]["probabilities"]["cbsd"] == 0.45
    assert "CMD 0.50 against CBSD 0.45" in answer["reasons"][0]["detail"]  # now it may say everything
    assert answer["counts"]["left_for_you"] == 1
    [event] = publisher.feedback  # the label is also the agronomist's feedback on the model's answer
    assert (event.job_id, event.label, event.source, event.agronomist) == (unsure, "cbsd", FeedbackSource.AGRONOMIST,
                                                                           "amina")  # fmt: skip
    with Session(services.engine) as session:
        [row] = [r for r in history(session, sample_sha(services, unsure)) if r.item_id]
    assert row.feedback_id == event.event_id  # so the event, recorded, adds no second label


def sample_sha(services: Services, job_id: str) -> str:
    from schemas.tables import Job

    with Session(services.engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.content_sha256


def test_bad_answers_are_refused_with_a_reason(client: TestClient, services: Services) -> None:
    queue_two(services)
    auth = agronomist(services)
    item = client.get("/v1/review/next", headers=auth).json()["item_id"]
    for body in ({"label": "banana"}, {}, {"label": "cmd", "skip": True}, {"label": "cmd", "who": "x"}):
        refused = client.post(f"/v1/review/{item}", json=body, headers=auth)
        assert refused.status_code == 422, body
    assert client.post("/v1/review/999", json={"label": "cmd"}, headers=auth).status_code == 404
    assert client.post(f"/v1/review/{item}", json={"label": "cmd"}, headers=auth).status_code == 200
    twice = client.post(f"/v1/review/{item}", json={"label": "cgm"}, headers=auth)
    assert twice.status_code == 409
    assert "undo" in twice.json()["detail"]


def test_skip_undo_and_nothing_left(client: TestClient, services: Services) -> None:
    queue_two(services)
    auth = agronomist(services)
    first = client.get("/v1/review/next", headers=auth).json()["item_id"]
    second = client.get("/v1/review/next", params={"exclude": first}, headers=auth).json()["item_id"]
    assert second != first
    assert client.post(f"/v1/review/{first}", json={"skip": True}, headers=auth).json()["label_id"] is None
    assert client.post(f"/v1/review/{second}", json={"label": "cbb"}, headers=auth).status_code == 200
    assert client.get("/v1/review/next", headers=auth).status_code == 204
    undone = client.post("/v1/review/undo", headers=auth).json()
    assert undone["item_id"] == second
    assert client.get("/v1/review/next", headers=auth).json()["item_id"] == second
    assert client.post(f"/v1/review/{second}", json={"label": "cbsd"}, headers=auth).status_code == 200
    client.post("/v1/review/undo", headers=auth)
    client.post(f"/v1/review/{second}", json={"label": "cbsd"}, headers=auth)
    assert client.post("/v1/review/undo", headers=auth).status_code == 200
    assert client.post("/v1/review/undo", headers=auth).status_code == 404  # the skip is not a label to undo

"""GET /v1/jobs: the device's own jobs, newest first, a page at a time, each with its Idempotency-Key."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select, update

from core.devices import device_for_token
from producers.api.deps import Services
from schemas.tables import Job, utcnow
from tests.producers.conftest import new_token
from tests.utils.factories import make_job


def jobs_of(services: Services, token: str, keys: list[str], minutes_apart: list[int]) -> None:
    """Jobs of the token's device with these keys, made these many minutes ago."""
    now = utcnow()
    with Session(services.engine) as session:
        device = device_for_token(session, token)
        assert device is not None
        for key, minutes in zip(keys, minutes_apart, strict=True):
            job = make_job(session, device, key, data=key.encode())
            session.exec(update(Job).where(col(Job.id) == job.id).values(created_at=now - timedelta(minutes=minutes)))
        session.commit()


def pages(client: TestClient, token: str, limit: int) -> list[list[str]]:
    seen: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["before"] = cursor
        answer = client.get("/v1/jobs", params=params, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen.append([job["idempotency_key"] for job in body["jobs"]])
        cursor = body["next"]
        if cursor is None:
            return seen
        assert len(seen) < 20


def test_a_devices_jobs_newest_first_page_by_page(client: TestClient, services: Services) -> None:
    mine, theirs = new_token(services, "mine"), new_token(services, "theirs")
    # Two pairs made at the same instant: the id breaks the tie, and no page boundary loses or repeats one.
    jobs_of(services, mine, ["a", "b", "c", "d", "e"], [50, 40, 30, 30, 10])
    jobs_of(services, theirs, ["x", "y"], [5, 45])
    with Session(services.engine) as session:
        ids = {job.idempotency_key: job.id for job in session.exec(select(Job))}
    tied = sorted(["c", "d"], key=lambda key: ids[key], reverse=True)
    expected = ["e", *tied, "b", "a"]
    assert pages(client, mine, 2) == [expected[:2], expected[2:4], expected[4:]]
    assert pages(client, mine, 100) == [expected]
    assert pages(client, mine, 1) == [[key] for key in expected]
    assert pages(client, theirs, 20) == [["x", "y"]]
    first = client.get("/v1/jobs", headers={"Authorization": f"Bearer {mine}"}).json()
    assert first["next"] is None  # the default page (20) holds all five
    view = first["jobs"][0]
    assert (view["job_id"], view["idempotency_key"], view["status"]) == (ids["e"], "e", "received")


def test_a_new_phone_has_an_empty_history(client: TestClient, services: Services) -> None:
    answer = client.get("/v1/jobs", headers={"Authorization": f"Bearer {new_token(services)}"})
    assert answer.json() == {"jobs": [], "next": None}


def test_a_bad_cursor_or_limit_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    cases: list[tuple[dict[str, str | int], int]] = [
        ({"before": "bm90LWEtY3Vyc29y"}, 400),  # base64 of "not-a-cursor"
        ({"before": "%%%"}, 422),
        ({"limit": 0}, 422),
        ({"limit": 101}, 422),
        ({"limit": "many"}, 422),
    ]
    for params, code in cases:
        answer = client.get("/v1/jobs", params=params, headers=auth)
        assert answer.status_code == code, (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"

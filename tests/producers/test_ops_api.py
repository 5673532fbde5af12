"""Phone events in, and what operators read out: `/v1/events` to the events queue, `/metrics` for Prometheus."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session

from core import telemetry
from core.config import settings
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.tables import MetricPoint, utcnow
from tests.utils.fakes import RecordingPublisher
from tests.utils.processes import ensure_default_redis

OPERATOR = ("operator", "test-password")  # the test run's MHOGO_FLOWER_PASSWORD (tests/conftest.py)


def event(n: int, kind: str = "upload_retried") -> dict[str, object]:
    return {"event_id": f"phone-event-{n:04d}", "kind": kind, "at": utcnow().isoformat(), "data": {"attempt": n}}


def test_phone_events_go_to_the_events_queue(
    client: TestClient, auth: dict[str, str], publisher: RecordingPublisher
) -> None:
    response = client.post("/v1/events", json=[event(1), event(2, "offline_answer_shown")], headers=auth)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2}
    [batch] = publisher.client_events
    assert [e.kind for e in batch.events] == ["upload_retried", "offline_answer_shown"]
    assert batch.device_id > 0


def test_bad_phone_events_get_a_reason(client: TestClient, auth: dict[str, str], publisher: RecordingPublisher) -> None:
    assert client.post("/v1/events", json=[event(1)]).status_code == 401
    bad_kind = client.post("/v1/events", json=[event(1, "Drop Table")], headers=auth)
    assert bad_kind.status_code == 422
    too_many = client.post("/v1/events", json=[event(n) for n in range(501)], headers=auth)
    assert too_many.status_code == 413
    assert "at most 500" in too_many.json()["detail"]
    publisher.down = True
    down = client.post("/v1/events", json=[event(1)], headers=auth)
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "30"
    assert publisher.client_events == []


def test_metrics_need_the_operator_login(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth).status_code == 401  # a device token is not an operator
    assert client.get("/metrics", auth=("operator", "wrong")).status_code == 401


def test_prometheus_has_a_credential_of_its_own_that_opens_nothing_else(services: Services) -> None:
    """Scraping /metrics needed the operators' login, which also opens the dashboard and Flower."""
    token = "scrape-only-7f3a"
    config = services.settings.model_copy(update={"METRICS_TOKEN": SecretStr(token)})
    with TestClient(create_app(dataclasses.replace(services, settings=config), sweep_on_startup=False)) as client:
        scrape = {"Authorization": f"Bearer {token}"}
        assert client.get("/metrics", headers=scrape).status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", auth=OPERATOR).status_code == 200
        assert client.get("/ops", headers=scrape).status_code == 401  # not the dashboard
        assert client.get("/v1/jobs/anything", headers=scrape).status_code == 401  # nor a phone's routes


def test_metrics_carry_every_workers_counters_and_the_latest_tick(client: TestClient, services: Services) -> None:
    ensure_default_redis()
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    redis_client.delete(telemetry.COUNTERS)
    labels = frozenset({"task": "mhogo.inference.diagnose", "state": "success", "host": "box-2"}.items())
    telemetry.add(redis_client, {("mhogo_tasks_total", labels): 3.0})
    telemetry.add(redis_client, {("mhogo_tasks_total", labels): 2.0})  # another process on another machine
    with Session(services.engine) as session:
        session.add(MetricPoint(at=utcnow() - timedelta(seconds=5), name="accuracy", key="agronomist",
                                model_version="v7", value=0.8125))  # fmt: skip
        session.commit()
    body = client.get("/metrics", auth=OPERATOR).text
    assert 'mhogo_tasks_total{host="box-2",state="success",task="mhogo.inference.diagnose"} 5.0' in body
    assert 'mhogo_accuracy{key="agronomist",model_version="v7"} 0.8125' in body
    redis_client.delete(telemetry.COUNTERS)
    redis_client.close()

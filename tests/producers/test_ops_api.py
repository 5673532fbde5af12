"""Phone events in, and what operators read out: `/v1/events` to the events queue, `/metrics` for Prometheus."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import timedelta

import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select

from core import telemetry
from core.config import settings
from core.deliveries import DeliveryCounter
from core.namespace import Namespace, resolve
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.tables import ClientEvent, MetricPoint, utcnow
from schemas.tasks import MAX_CLIENT_EVENTS, MAX_EVENT_DATA_ITEMS, MAX_EVENTS_BODY_BYTES, ClientEventKind
from tests.utils.fakes import RecordingPublisher
from tests.utils.processes import ensure_default_redis
from workers.base import MhogoTask
from workers.events import client_events

OPERATOR = ("operator", "test-password")  # the test run's MHOGO_FLOWER_PASSWORD (tests/conftest.py)
JSON = {"Content-Type": "application/json"}


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


def test_phone_events_are_bounded_in_kind_size_and_shape(
    client: TestClient, auth: dict[str, str], publisher: RecordingPublisher
) -> None:
    """A made-up kind is refused with the kinds there are; `data` is flat, short and few; a request at most 256 KiB
    (one POST on main stored 10 MB and added 502 Prometheus series)."""
    made_up = client.post("/v1/events", json=[event(1), event(2, "my_new_kind")], headers=auth)
    assert made_up.status_code == 422
    assert all(kind.value in made_up.text for kind in ClientEventKind)  # the refusal names every kind there is
    nested = event(3) | {"data": {"log": {"lines": ["a"] * 1000}}}
    listed = event(4) | {"data": {"lines": ["a", "b"]}}
    long_text = event(5) | {"data": {"note": "x" * 201}}
    many = event(6) | {"data": {f"key_{n}": n for n in range(MAX_EVENT_DATA_ITEMS + 1)}}
    odd_key = event(7) | {"data": {"Key With Spaces": 1}}
    for bad in (nested, listed, long_text, many, odd_key):
        response = client.post("/v1/events", json=[bad], headers=auth)
        assert response.status_code == 422, bad
    fine = event(8) | {"data": {"attempt": 3, "status": 503, "waited_s": 1.5, "offline": True, "note": "x" * 200}}
    assert client.post("/v1/events", json=[fine], headers=auth).status_code == 202
    padded = [event(n) | {"data": {"note": "x" * 200}} for n in range(MAX_CLIENT_EVENTS)]  # 500 events, ~150 KiB more
    big = client.post("/v1/events", content=json.dumps(padded * 3).encode(), headers=auth | JSON)
    assert big.status_code == 413
    assert f"at most {MAX_EVENTS_BODY_BYTES // 1024} KiB" in big.json()["detail"]
    huge = client.post("/v1/events", content=b"[" + b" " * (10 * 1024 * 1024) + b"]", headers=auth | JSON)
    assert huge.status_code == 413  # refused while it streams in, never parsed
    assert [len(batch.events) for batch in publisher.client_events] == [1]


def test_prometheus_series_stay_fixed_whatever_kinds_phones_send(
    client: TestClient, auth: dict[str, str], publisher: RecordingPublisher, services: Services
) -> None:
    """Every kind there is, then fifty made up by a phone: the events worker counts what the API let through, and
    `/metrics` shows one series per kind there is, however many kinds were sent."""
    ensure_default_redis()
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    namespace = resolve(services.engine, None)  # the test database's deployment, as the worker and the API read it
    redis_client.delete(namespace.counters)
    known = [event(n, kind.value) for n, kind in enumerate(ClientEventKind)]
    assert client.post("/v1/events", json=known, headers=auth).status_code == 202
    for n in range(50):
        assert client.post("/v1/events", json=[event(100 + n, f"made_up_{n}")], headers=auth).status_code == 422
    MhogoTask._engine = services.engine
    MhogoTask._deliveries = DeliveryCounter(redis_client, namespace.deliveries)
    try:
        for batch in publisher.client_events:
            assert client_events.apply(args=(batch.model_dump(mode="json"),)).get() == len(ClientEventKind)
        older_api = {"device_id": publisher.client_events[0].device_id, "events": [event(999, "made_up_by_old_api")]}
        assert client_events.apply(args=(older_api,)).failed()  # a message queued by an older release: not counted
    finally:
        MhogoTask._engine = MhogoTask._deliveries = None
    body = client.get("/metrics", auth=OPERATOR).text
    series = [line for line in body.splitlines() if line.startswith("mhogo_client_events_total{")]
    assert sorted(series) == sorted(f'mhogo_client_events_total{{kind="{kind.value}"}} 1.0' for kind in ClientEventKind)
    with Session(services.engine) as session:
        stored = session.exec(select(ClientEvent)).all()
    assert len(stored) == len(ClientEventKind)
    assert all(row.received_at > utcnow() - timedelta(minutes=5) for row in stored)  # the server's clock, for retention
    redis_client.delete(namespace.counters)
    redis_client.close()


def test_metrics_need_the_operator_login(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth).status_code == 403  # a device token is not an operator
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
    """The counters of the deployment's workers, every machine's, and none of another deployment's on the same
    Redis database (before namespaces they were one hash, so /metrics counted both deployments' tasks)."""
    ensure_default_redis()
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    ours, theirs = services.deployment(), Namespace(uuid.uuid4().hex[:12])
    labels = frozenset({"task": "mhogo.inference.diagnose", "state": "success", "host": "box-2"}.items())
    telemetry.add(redis_client, ours, {("mhogo_tasks_total", labels): 3.0})
    telemetry.add(redis_client, ours, {("mhogo_tasks_total", labels): 2.0})  # another process on another machine
    telemetry.add(redis_client, theirs, {("mhogo_tasks_total", labels): 7.0})  # another deployment's worker
    with Session(services.engine) as session:
        session.add(MetricPoint(at=utcnow() - timedelta(seconds=5), name="accuracy", key="agronomist",
                                model_version="v7", value=0.8125))  # fmt: skip
        session.commit()
    body = client.get("/metrics", auth=OPERATOR).text
    assert 'mhogo_tasks_total{host="box-2",state="success",task="mhogo.inference.diagnose"} 5.0' in body
    assert 'mhogo_accuracy{key="agronomist",model_version="v7"} 0.8125' in body
    assert telemetry.read(redis_client, theirs) == [("mhogo_tasks_total", dict(labels), 7.0)]
    redis_client.delete(ours.counters, theirs.counters)
    redis_client.close()

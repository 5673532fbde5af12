"""Backpressure: over the queue depth limit, uploads get 503 with Retry-After before their bytes are read; a photo
already accepted is still answered; an unknown depth (Redis away) refuses nothing. fakeredis: only LLEN is read."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient

from core.namespace import Namespace
from producers.api.app import create_app
from producers.api.backlog import Backlog, retry_after_s
from producers.api.deps import Services
from tests.utils.factories import sample_bytes

PHOTO = {"Content-Type": "image/jpeg"}
OURS, THEIRS = Namespace("a1a1a1a1a1a1"), Namespace("b2b2b2b2b2b2")


@pytest.fixture
def queues() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def busy_client(services: Services, queues: fakeredis.FakeRedis) -> Iterator[TestClient]:
    limited = dataclasses.replace(services, settings=services.settings.model_copy(update={"MAX_QUEUE_DEPTH": 3}),
                                  backlog=Backlog(queues, OURS, every_s=0))  # fmt: skip
    with TestClient(create_app(limited, sweep_on_startup=False), raise_server_exceptions=False) as client:
        yield client


def test_uploads_wait_while_the_queues_are_full_and_flow_when_they_drain(
    busy_client: TestClient, queues: fakeredis.FakeRedis, auth: dict[str, str]
) -> None:
    key = uuid.uuid4().hex
    queues.rpush(THEIRS.queue("inference"), *[b"m"] * 10)  # another deployment's backlog holds nobody here up
    assert (
        busy_client.post(
            "/v1/photos", content=sample_bytes(), headers=auth | PHOTO | {"Idempotency-Key": key}
        ).status_code
        == 202
    )
    queues.rpush(OURS.queue("inference"), *[b"m"] * 4)
    refused = busy_client.post("/v1/photos", content=sample_bytes("cbb"),
                               headers=auth | PHOTO | {"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 5
    assert "send it again later" in refused.json()["detail"]
    replay = busy_client.post("/v1/photos", content=sample_bytes(), headers=auth | PHOTO | {"Idempotency-Key": key})
    assert replay.status_code == 202  # accepted before: always answered
    assert replay.headers["Idempotent-Replayed"] == "true"
    queues.ltrim(OURS.queue("inference"), 0, 1)
    drained = busy_client.post("/v1/photos", content=sample_bytes("cbb"),
                               headers=auth | PHOTO | {"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    assert drained.status_code == 202


def test_an_unknown_depth_refuses_nothing() -> None:
    away = Backlog(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2), OURS, every_s=0)
    assert away.depth() is None


def test_retry_after_grows_with_the_backlog_within_bounds() -> None:
    assert retry_after_s(5001, 5000, 5.0) == 5
    assert retry_after_s(6000, 5000, 5.0) == 205
    assert retry_after_s(10**7, 5000, 5.0) == 600

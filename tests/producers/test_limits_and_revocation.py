"""Per-device rate limits (429 with Retry-After, each device and each action on its own) and token revocation."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from limits import parse
from limits.storage import MemoryStorage
from sqlmodel import Session

from core.devices import revoke_device, revoked
from producers.api.app import create_app
from producers.api.deps import Services
from producers.api.ratelimit import DeviceLimiter
from tests.producers.conftest import new_token
from tests.utils.factories import sample_bytes


@pytest.fixture
def limited(services: Services) -> Iterator[TestClient]:
    limits = dataclasses.replace(services, limiter=DeviceLimiter(MemoryStorage(), parse("3/minute")))
    with TestClient(create_app(limits, sweep_on_startup=False), raise_server_exceptions=False) as client:
        yield client


def upload(client: TestClient, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "image/jpeg"}
    return client.post("/v1/photos", content=sample_bytes(), headers=headers).status_code


def test_a_device_over_its_rate_waits_and_others_do_not(limited: TestClient, services: Services) -> None:
    busy, calm = new_token(services, "busy"), new_token(services, "calm")
    assert [upload(limited, busy) for _ in range(3)] == [202, 202, 202]
    headers = {"Authorization": f"Bearer {busy}", "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "image/jpeg"}
    refused = limited.post("/v1/photos", content=sample_bytes(), headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Wait a little" in refused.json()["detail"]
    assert upload(limited, calm) == 202  # another phone is not slowed by this one
    events = [{"event_id": uuid.uuid4().hex, "kind": "upload_retried", "at": "2026-11-29T10:00:00Z"}]
    reported = limited.post("/v1/events", json=events, headers={"Authorization": f"Bearer {busy}"})
    assert reported.status_code == 202  # each action has its own allowance


def test_a_limiter_that_cannot_count_refuses_nothing() -> None:
    away = DeviceLimiter.from_settings("redis://127.0.0.1:1/0", "1/minute")
    assert away is not None
    assert away.wait_s(1, "upload") is None
    assert away.wait_s(1, "upload") is None
    assert DeviceLimiter.from_settings("redis://127.0.0.1:1/0", "") is None


def test_a_revoked_token_opens_nothing_at_once(client: TestClient, services: Services) -> None:
    token = new_token(services, "lost phone")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/jobs/unknown", headers=headers).status_code == 404  # the token works
    with Session(services.engine) as session:
        device = revoke_device(session, 1, "ops", "phone stolen")
        assert device.id in revoked(session)
        assert revoked(session)[1].reason == "phone stolen"
    assert client.get("/v1/jobs/unknown", headers=headers).status_code == 401
    assert upload(client, token) == 401

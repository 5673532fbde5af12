"""Per-device rate limits (429 with Retry-After, each device and each action on its own) and token revocation."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from fastapi.testclient import TestClient
from limits import parse
from limits.storage import MemoryStorage
from sqlmodel import Session

import ml.imaging
import producers.intake
from core.config import settings
from core.devices import revoke_device, revoked
from core.namespace import Namespace
from producers.api.app import create_app
from producers.api.deps import Services
from producers.api.ratelimit import RateLimiter
from tests.producers.conftest import new_token
from tests.utils.factories import sample_bytes
from tests.utils.processes import ensure_default_redis


@pytest.fixture
def limited(services: Services) -> Iterator[TestClient]:
    windows = {action: parse("3/minute") for action in ("upload", "feedback", "events")}
    limits = dataclasses.replace(services, limiter=RateLimiter(MemoryStorage(), windows))
    with TestClient(create_app(limits, sweep_on_startup=False), raise_server_exceptions=False) as client:
        yield client


def limited_by(services: Services, **windows: str) -> TestClient:
    limiter = RateLimiter(MemoryStorage(), {action.replace("_", "-"): parse(rate) for action, rate in windows.items()})
    return TestClient(create_app(dataclasses.replace(services, limiter=limiter), sweep_on_startup=False))


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


def test_a_phone_polling_too_fast_waits_too(services: Services) -> None:
    """Reading a job and asking an upload's offset were not limited at all: a phone polling in a tight loop had the
    API to itself."""
    token = new_token(services, "eager")
    headers = {"Authorization": f"Bearer {token}"}
    with limited_by(services, poll="4/minute") as client:
        polls = [client.get("/v1/jobs/unknown", headers=headers).status_code for _ in range(3)]
        polls.append(client.head("/v1/uploads/unknown", headers=headers | {"Tus-Resumable": "1.0.0"}).status_code)
        refused = client.get("/v1/jobs/unknown", headers=headers)
    assert polls == [404, 404, 404, 404]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


def test_one_address_is_limited_before_any_authentication(services: Services) -> None:
    """A flood from one address reached the routes, and the database behind every token check, without a limit."""
    with limited_by(services, request="5/minute") as client:
        answers = [client.get("/healthz").status_code for _ in range(5)]
        refused = client.get("/v1/jobs/unknown", headers={"Authorization": "Bearer whatever"})
    assert answers == [200] * 5
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert "from this address" in refused.json()["detail"]


def test_bad_tokens_from_one_address_get_429_once_they_are_too_many(services: Services) -> None:
    good = new_token(services, "good")
    with limited_by(services, auth_failure="3/minute") as client:
        bad = [client.get("/v1/jobs/x", headers={"Authorization": f"Bearer guess-{n}"}).status_code for n in range(4)]
        still = client.get("/v1/jobs/x", headers={"Authorization": f"Bearer {good}"}).status_code
    assert bad == [401, 401, 401, 429]
    assert still == 404  # a valid token from the same address (phones behind one carrier address) goes on


def test_a_limiter_that_cannot_count_refuses_nothing() -> None:
    away = RateLimiter.from_rates("redis://127.0.0.1:1/0", {"upload": "1/minute"}, Namespace("a1a1a1a1a1a1"))
    assert away is not None
    assert away.device_wait_s(1, "upload") is None
    assert away.device_wait_s(1, "upload") is None
    assert away.device_wait_s(1, "poll") is None  # no window for it: not limited
    assert RateLimiter.from_rates("redis://127.0.0.1:1/0", {"upload": ""}, Namespace("a1a1a1a1a1a1")) is None


def test_two_deployments_on_one_redis_do_not_share_their_phones_allowance() -> None:
    """Device ids start at 1 in every database: before namespaces, device 1 of a second deployment on the same Redis
    database spent the first one's device 1's allowance (one `LIMITS:LIMITER/mhogo-device/1/...` key for both)."""
    ensure_default_redis()
    ours, theirs = Namespace(uuid.uuid4().hex[:12]), Namespace(uuid.uuid4().hex[:12])
    mine = RateLimiter.from_rates(settings.REDIS_URL, {"upload": "2/minute"}, ours)
    other = RateLimiter.from_rates(settings.REDIS_URL, {"upload": "2/minute"}, theirs)
    assert mine is not None
    assert other is not None
    assert [mine.device_wait_s(1, "upload"), mine.device_wait_s(1, "upload")] == [None, None]
    assert mine.device_wait_s(1, "upload") is not None  # device 1 of ours has used its rate
    assert other.device_wait_s(1, "upload") is None  # device 1 of theirs has not
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = {key.decode() for key in client.scan_iter(match="*mhogo-device/1/upload*")}
    assert {key.split(":LIMITER", 1)[0] for key in keys} == {ours.rate_limits, theirs.rate_limits}
    client.delete(*keys)


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


def test_a_phone_holds_at_most_its_uploads_in_flight(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """MHOGO_MAX_UPLOADS_IN_FLIGHT uploads of one phone held in their check (a gate): its next upload is 429 with
    Retry-After at once, another phone's is not, and once they are answered the phone sends again."""
    config = services.settings.model_copy(update={"MAX_UPLOADS_IN_FLIGHT": 2, "IMAGE_CHECK_THREADS": 3})
    limited = dataclasses.replace(services, settings=config)
    busy, calm = new_token(services, "busy"), new_token(services, "calm")
    entered, gate = threading.Semaphore(0), threading.Event()
    validate = ml.imaging.validate

    def held(data: bytes, max_pixels: int) -> tuple[str, tuple[int, int]]:
        entered.release()
        gate.wait(60)
        return validate(data, max_pixels)

    monkeypatch.setattr(producers.intake, "validate", held)
    with TestClient(create_app(limited, sweep_on_startup=False)) as client, ThreadPoolExecutor(3) as pool:
        try:
            in_flight = [pool.submit(upload, client, busy) for _ in range(2)]
            assert entered.acquire(timeout=30)
            assert entered.acquire(timeout=30)
            headers = {"Authorization": f"Bearer {busy}", "Idempotency-Key": "third", "Content-Type": "image/jpeg"}
            refused = client.post("/v1/photos", content=sample_bytes(), headers=headers)
            other = pool.submit(upload, client, calm)
            assert entered.acquire(timeout=30)  # another phone's upload is taken in and checked meanwhile
        finally:
            gate.set()
        assert [answer.result(30) for answer in in_flight] == [202, 202]
        assert other.result(30) == 202
        assert upload(client, busy) == 202
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "5"
    assert (
        refused.json()["detail"] == "This phone is already sending 2 photos. Wait for their answers, then send "
        "this one."
    )

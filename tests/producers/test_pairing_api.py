"""POST /v1/pairings: a pairing link's code for the device's token, once; and a revoked phone told it was revoked."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient
from limits import parse
from limits.storage import MemoryStorage
from sqlmodel import Session

from core.devices import add_device, new_pairing, revoke_device
from producers.api.app import create_app
from producers.api.deps import Services
from producers.api.ratelimit import RateLimiter
from schemas.catalogue import text
from tests.producers.conftest import new_token

WEEK = 7 * 24 * 3600.0


def link_code(services: Services, name: str = "farmer") -> tuple[int, str]:
    with Session(services.engine) as session:
        device, _ = add_device(session, name)
        assert device.id is not None
        return device.id, new_pairing(session, device.id, WEEK).code


def test_a_code_pairs_once_and_its_token_opens_the_api(client: TestClient, services: Services) -> None:
    device_id, code = link_code(services, "Amina's phone")
    paired = client.post("/v1/pairings", json={"code": code})
    assert paired.status_code == 201, paired.text
    assert paired.headers["cache-control"] == "no-store"
    body = paired.json()
    assert (body["device_id"], body["device_name"]) == (device_id, "Amina's phone")
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200
    again = client.post("/v1/pairings", json={"code": code})
    assert again.status_code == 410
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["detail"] == text("app.pair.used")
    unknown = client.post("/v1/pairings", json={"code": code + "x"})
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == text("app.pair.used")


def test_a_revoked_devices_code_is_gone(client: TestClient, services: Services) -> None:
    device_id, code = link_code(services)
    with Session(services.engine) as session:
        revoke_device(session, device_id, "ops")
    assert client.post("/v1/pairings", json={"code": code}).status_code == 410


def test_codes_that_pair_nothing_are_limited_per_address(services: Services) -> None:
    limiter = RateLimiter(MemoryStorage(), {"auth-failure": parse("2/minute")})
    _, code = link_code(services)
    with TestClient(create_app(dataclasses.replace(services, limiter=limiter), sweep_on_startup=False)) as client:
        guesses = [client.post("/v1/pairings", json={"code": f"guess-{n}"}) for n in range(3)]
        real = client.post("/v1/pairings", json={"code": code})
    assert [guess.status_code for guess in guesses] == [404, 404, 429]
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    assert real.status_code == 201  # a phone behind the same carrier address with a real link still pairs


def test_a_revoked_token_is_told_so_and_an_unknown_one_is_not(client: TestClient, services: Services) -> None:
    token = new_token(services, "lost phone")
    with Session(services.engine) as session:
        revoke_device(session, 1, "ops", "stolen")
    revoked = client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    unknown = client.get("/v1/jobs", headers={"Authorization": "Bearer never-given-out"})
    missing = client.get("/v1/jobs")
    assert [answer.status_code for answer in (revoked, unknown, missing)] == [401, 401, 401]
    assert revoked.headers["content-type"] == "application/problem+json"
    assert revoked.json()["reason"] == "revoked"
    assert revoked.json()["detail"] == text("app.revoked")
    assert unknown.json()["reason"] == missing.json()["reason"] == "unknown"
    assert unknown.json()["detail"] != text("app.revoked")
    assert "Bearer" in revoked.headers["www-authenticate"]
    upload = client.post("/v1/photos", content=b"x", headers={"Authorization": f"Bearer {token}",
                         "Idempotency-Key": "k", "Content-Type": "image/jpeg"})  # fmt: skip
    assert (upload.status_code, upload.json()["reason"]) == (401, "revoked")  # every route that takes a token

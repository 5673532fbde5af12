"""GET /review, the agronomists' workbench page, from a built folder (a fake one here: the tests build nothing): the
page with the farmer's app's security headers for an agronomist, the login page for a browser with no login (or an
ended one), 403 for anyone else, and 503 saying how to build it when it was never built."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.config import Settings
from core.users import start_session
from producers.api.app import create_app
from producers.api.deps import Services
from producers.api.webapp import SECURITY_HEADERS
from tests.utils.factories import make_device, make_person

PAGE = b"<!doctype html><title>mhogo workbench</title><script type=module src=/app/assets/review-1a2b3c4d.js></script>"
TO_LOGIN = "/login?next=%2Freview"


def client_for(services: Services, folder: Path) -> TestClient:
    config = Settings(HOME=services.settings.HOME, APP_DIR=folder, PUBLIC_URL="https://mhogo.example")
    app = create_app(dataclasses.replace(services, settings=config), sweep_on_startup=False)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "review.html").write_bytes(PAGE)
    return folder


@pytest.fixture
def client(services: Services, dist: Path) -> Iterator[TestClient]:
    with client_for(services, dist) as client:
        yield client


def log_in(services: Services, client: TestClient, name: str, role: str = "agronomist") -> str:
    """A browser session for a new person, as the login page would start it; their API token."""
    with Session(services.engine) as session:
        user, token = make_person(session, name, role)
        started = start_session(session, services.settings, user)
    client.cookies.set("mhogo_session", started.cookie)
    return token


def test_an_agronomist_gets_the_page_with_the_app_s_security_headers(services: Services, client: TestClient) -> None:
    log_in(services, client, "amina")
    page = client.get("/review")
    assert (page.status_code, page.content) == (200, PAGE)
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"  # a new build is picked up at once; its assets are hashed
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]


def test_with_an_api_token_too(services: Services, client: TestClient) -> None:
    token = log_in(services, client, "amina")
    client.cookies.clear()
    assert client.get("/review", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_browser_with_no_login_or_an_ended_one_goes_to_the_login_page(client: TestClient) -> None:
    nobody = client.get("/review")
    assert (nobody.status_code, nobody.headers["location"]) == (303, TO_LOGIN)
    client.cookies.set("mhogo_session", "a session that ended long ago")
    ended = client.get("/review")
    assert (ended.status_code, ended.headers["location"]) == (303, TO_LOGIN)


def test_an_operator_or_a_phone_is_refused(services: Services, client: TestClient) -> None:
    log_in(services, client, "otieno", "operator")
    operator = client.get("/review")
    assert operator.status_code == 403
    assert "agronomist" in operator.json()["detail"]
    client.cookies.clear()
    with Session(services.engine) as session:
        _, device_token = make_device(session)
    phone = client.get("/review", headers={"Authorization": f"Bearer {device_token}"})
    assert phone.status_code == 403
    assert "device token" in phone.json()["detail"]


def test_a_page_never_built_says_how_to_build_it(services: Services, tmp_path: Path) -> None:
    with client_for(services, tmp_path / "no-dist") as client:
        log_in(services, client, "amina")
        answer = client.get("/review")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("text/plain")
    assert "make app" in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"

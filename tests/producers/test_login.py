"""The login page, the session cookie and CSRF (producers/api/login.py, producers/api/auth.py), through the app."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response as Answer  # what the test client answers with
from sqlmodel import Session

from producers.api.app import create_app
from producers.api.deps import Services
from tests.utils.factories import make_person


@pytest.fixture
def browser(services: Services) -> Iterator[TestClient]:
    """A browser on HTTPS (the session cookie is Secure)."""
    with TestClient(create_app(services, sweep_on_startup=False), base_url="https://testserver",
                    raise_server_exceptions=False, follow_redirects=False) as client:  # fmt: skip
        yield client


@pytest.fixture
def amina(services: Services) -> str:
    with Session(services.engine) as session:
        make_person(session, "amina")
    return "password of amina"


def form_token(client: TestClient, path: str = "/login") -> str:
    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def log_in(client: TestClient, name: str, password: str, next_path: str = "") -> Answer:
    token = form_token(client)
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": next_path})


def test_logging_in_sets_a_secure_session_cookie_and_opens_v1_me(browser: TestClient, amina: str) -> None:
    answer = log_in(browser, "amina", amina, "/review")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/review"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("mhogo_session="))
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower()
    me = browser.get("/v1/me").json()
    assert (me["name"], me["role"]) == ("amina", "agronomist")
    assert len(me["csrf_token"]) > 20


def test_a_state_changing_request_without_the_csrf_token_is_refused(browser: TestClient, amina: str) -> None:
    log_in(browser, "amina", amina)
    csrf = browser.get("/v1/me").json()["csrf_token"]
    assert browser.post("/logout").status_code == 403  # the cookie alone, as another site would send it
    assert browser.post("/logout", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert browser.post("/v1/review/undo").status_code == 403
    out = browser.post("/logout", headers={"X-CSRF-Token": csrf})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert browser.get("/v1/me").status_code == 401  # the session ended on the server, not only in the browser


def test_the_login_form_itself_needs_its_own_token(browser: TestClient, amina: str) -> None:
    no_token = browser.post("/login", data={"name": "amina", "password": amina, "csrf_token": "guess"})
    assert no_token.status_code == 403
    assert "mhogo_session" not in no_token.headers.get("set-cookie", "")


def test_a_wrong_password_is_401_and_repeated_ones_lock_the_login(browser: TestClient, amina: str) -> None:
    wrong = log_in(browser, "amina", "not the password")
    assert wrong.status_code == 401
    assert "Wrong name or password" in wrong.text
    for _ in range(4):
        answer = log_in(browser, "amina", "not the password")
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) > 0
    assert log_in(browser, "amina", amina).status_code == 429  # locked, the right password too


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_next_never_leads_off_the_site(browser: TestClient, amina: str, target: str) -> None:
    answer = log_in(browser, "amina", amina, target)
    assert answer.headers["location"] == "/review"  # the agronomist's landing page instead

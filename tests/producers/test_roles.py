"""Who may do what is decided by the credential alone: no credential, a device token, an agronomist and an operator
(each with a browser session and with an API token) against every person's endpoint. 401: nobody; 403: somebody
who may not. A request body never changes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.users import start_session
from producers.api.app import create_app
from producers.api.deps import Services
from tests.utils.factories import make_device, make_person

WHO = ("nobody", "device", "agronomist-token", "agronomist-session", "operator-token", "operator-session")
OK = 200
# endpoint -> the status each of WHO gets
MATRIX = {
    ("GET", "/v1/me"): (401, 403, OK, OK, OK, OK),
    ("GET", "/v1/review/next"): (401, 403, 204, 204, 403, 403),
    ("GET", "/v1/review/1"): (401, 403, 404, 404, 403, 403),
    ("GET", "/v1/review/1/photo"): (401, 403, 404, 404, 403, 403),
    ("POST", "/v1/review/1"): (401, 403, 404, 404, 403, 403),
    ("POST", "/v1/review/undo"): (401, 403, 404, 404, 403, 403),
    ("GET", "/v1/review/agreement"): (401, 403, 403, 403, OK, OK),
    ("GET", "/ops"): (401, 403, 403, 403, OK, OK),
    ("GET", "/metrics"): (401, 403, 403, 403, OK, OK),
    ("GET", "/review"): (303, 403, OK, OK, 403, 403),
}


@pytest.fixture
def clients(services: Services) -> Iterator[dict[str, TestClient]]:
    app = create_app(services, sweep_on_startup=False)
    made: dict[str, TestClient] = {}
    with Session(services.engine) as session:
        _, device_token = make_device(session)
        agronomist, agronomist_token = make_person(session, "amina", "agronomist")
        operator, operator_token = make_person(session, "otieno", "operator")
        sessions = {who: start_session(session, services.settings, user)
                    for who, user in (("agronomist", agronomist), ("operator", operator))}  # fmt: skip
    bearer = {"device": device_token, "agronomist-token": agronomist_token, "operator-token": operator_token}
    for who in WHO:
        client = TestClient(app, base_url="https://testserver", raise_server_exceptions=False, follow_redirects=False)
        client.__enter__()
        if who in bearer:
            client.headers["Authorization"] = f"Bearer {bearer[who]}"
        elif who.endswith("-session"):
            started = sessions[who.removesuffix("-session")]
            client.cookies.set("mhogo_session", started.cookie)
            client.headers["X-CSRF-Token"] = started.csrf_token
        made[who] = client
    yield made
    for client in made.values():
        client.__exit__(None, None, None)


@pytest.mark.parametrize(("method", "path"), list(MATRIX))
def test_each_credential_gets_exactly_what_it_may(clients: dict[str, TestClient], method: str, path: str) -> None:
    body = {"label": "cmd"} if method == "POST" and path != "/v1/review/undo" else None
    got = tuple(clients[who].request(method, path, json=body).status_code for who in WHO)
    assert dict(zip(WHO, got, strict=True)) == dict(zip(WHO, MATRIX[(method, path)], strict=True))


def test_a_device_token_stays_a_farmer_s_word_whatever_the_body_says(clients: dict[str, TestClient]) -> None:
    phone = clients["device"]
    assert phone.post("/v1/review/1", json={"label": "cmd", "agronomist": "amina"}).status_code == 403


def test_a_browser_without_a_login_is_sent_to_the_login_page(clients: dict[str, TestClient]) -> None:
    page = clients["nobody"].get("/ops", headers={"Accept": "text/html"})
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2Fops")
    assert clients["nobody"].get("/review").headers["location"] == "/login?next=%2Freview"

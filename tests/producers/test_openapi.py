"""schemathesis against the API's own OpenAPI schema, with all its checks: whatever a client sends, valid by the
schema or not, the API never answers 5xx, every answer (status, content type, headers, body: errors as RFC 9457
problems) is one the schema promises, and what the schema calls invalid or incomplete is refused."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS as ALL_CHECKS
from schemathesis.checks import CheckFunction, positive_data_acceptance
from schemathesis.core.result import Ok
from sqlmodel import Session

from core.blobs import BlobStore
from core.config import Settings
from core.db import open_database
from core.devices import add_device
from producers.api.app import create_app
from producers.api.deps import Services
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher

# Every check schemathesis has: no 5xx; status, content type (problems are application/problem+json), headers and
# body as documented; schema-invalid requests refused, missing required headers refused, unsupported methods 405,
# auth not ignored. One exception below: a schema cannot say "a whole JPEG", "a job of this phone's" or "a cursor
# this API gave out", so photo bytes, an event naming another phone's job, and a page's cursor, valid by the schema,
# may still be refused.
CHECKS: list[CheckFunction] = [
    check for check in ALL_CHECKS.get_all() if callable(check) and not isinstance(check, type)
]
BEYOND_A_SCHEMA = {"POST /v1/photos", "POST /v1/uploads", "PATCH /v1/uploads/{upload_id}", "POST /v1/events",
                   "GET /v1/jobs"}  # fmt: skip
OPERATOR = ("operator", "s3cret-operator")
# Bodies schemathesis cannot make by itself: real photos, a few bytes of one, or noise.
PHOTOS = st.one_of(
    st.sampled_from([sample_bytes(kind) for kind in ("cmd", "healthy")]),
    st.builds(lambda n: sample_bytes("cbb")[:n], st.integers(0, 4096)),
    st.binary(max_size=2048),
)
for media_type in ("image/jpeg", "image/png", "application/offset+octet-stream"):
    schemathesis.openapi.media_type(media_type, PHOTOS)


class Api:
    def __init__(self, app: FastAPI, token: str) -> None:
        self.app, self.token = app, token


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home: Path = tmp_path_factory.mktemp("openapi")
    engine = open_database(f"sqlite:///{home / 'mhogo.db'}")
    config = Settings(HOME=home, PUBLIC_URL="http://testserver", FLOWER_USER=OPERATOR[0],
                      FLOWER_PASSWORD=OPERATOR[1], RATE_LIMIT="")  # fmt: skip
    services = Services(settings=config, engine=engine, blobs=BlobStore(home / "blobs"), publisher=RecordingPublisher())
    with Session(engine) as session:
        token = add_device(session, "schemathesis")[1]
    app = create_app(services, sweep_on_startup=False)
    with TestClient(app) as client:  # runs startup; one real job, so job routes have something to find
        client.post("/v1/photos", content=sample_bytes("cmd"), headers={"Authorization": f"Bearer {token}",
                    "Idempotency-Key": "seed", "Content-Type": "image/jpeg"})  # fmt: skip
        yield Api(app, token)
    engine.dispose()


def authorization(path: str, token: str) -> str:
    if path in ("/metrics", "/ops"):
        return "Basic " + base64.b64encode(":".join(OPERATOR).encode()).decode()
    return f"Bearer {token}"


def test_no_5xx_and_every_answer_matches_the_schema(api: Api) -> None:
    """Every operation, with cases drawn from its schema (and schemathesis's near misses of it). The pytest plugin
    (`from_fixture`) does not run on pytest 9 yet, so the operations are walked here with hypothesis directly."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # every operation in the schema can be tested
        operations.append(result.ok())
    assert len(operations) >= 10  # photos, jobs, feedback, events, health, and five of tus
    answered: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_within_the_schema(case: schemathesis.Case[Any]) -> None:
            headers = {"Authorization": authorization(case.path, api.token)}
            if case.path.startswith("/v1/uploads"):  # past the protocol check, to the upload itself
                headers["Tus-Resumable"] = "1.0.0"
            label = case.operation.label
            checks = [c for c in CHECKS if c is not positive_data_acceptance or label not in BEYOND_A_SCHEMA]
            response = case.call_and_validate(headers=headers, checks=checks)
            answered[(case.operation.label, response.status_code)] += 1

        answers_within_the_schema()
    print("\n".join(f"{label}: HTTP {code} x{count}" for (label, code), count in sorted(answered.items())))
    assert {label for label, _ in answered} == {operation.label for operation in operations}
    # The generated cases get past authentication and the protocol checks, to the routes' own answers.
    reached = {("POST /v1/photos", 202), ("GET /v1/jobs/{job_id}", 404), ("HEAD /v1/uploads/{upload_id}", 404),
               ("GET /v1/jobs", 200), ("GET /v1/model", 200), ("POST /v1/pairings", 404)}  # fmt: skip
    assert reached <= set(answered)


def test_every_error_is_a_problem_the_document_promises(api: Api) -> None:
    """One error shape everywhere (RFC 9457), FastAPI's own validation errors included: they were a list under
    `detail`, while the document promised a Problem."""
    auth = {"Authorization": f"Bearer {api.token}"}
    with TestClient(api.app) as client:
        answers = {
            "validation": client.post("/v1/events", json=[{"kind": 5}], headers=auth),
            "bad input": client.post("/v1/photos", content=b"x", headers=auth | {"Content-Type": "image/jpeg"}),
            "no token": client.get("/v1/jobs/nope"),
            "not found": client.get("/v1/jobs/nope", headers=auth),
            "no route": client.get("/v2/nothing"),
            "too large": client.post("/v1/photos", content=b"x" * (11 * 1024 * 1024),
                                     headers=auth | {"Content-Type": "image/jpeg", "Idempotency-Key": "big"}),
        }  # fmt: skip
        document = client.get("/openapi.json").json()
    for what, answer in answers.items():
        assert answer.headers["content-type"] == "application/problem+json", (what, answer.headers)
        problem = answer.json()
        assert problem["status"] == answer.status_code, (what, problem)
        assert set(problem) >= {"type", "title", "status", "detail"}, (what, problem)
        assert isinstance(problem["detail"], str), (what, problem)
    assert [e["field"] for e in answers["validation"].json()["errors"]][:2] == ["body 0 event_id", "body 0 kind"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, answer in operation["responses"].items():
                if code[0] in "45":
                    assert set(answer["content"]) == {"application/problem+json"}, (method, path, code)


def test_the_headers_the_api_requires_are_documented_as_required(api: Api) -> None:
    with TestClient(api.app) as client:
        document = client.get("/openapi.json").json()

    def required(method: str, path: str) -> set[str]:
        parameters = document["paths"][path][method].get("parameters", [])
        return {p["name"] for p in parameters if p["in"] == "header" and p.get("required")}

    assert required("post", "/v1/photos") == {"idempotency-key"}
    assert required("post", "/v1/uploads") == {"idempotency-key", "upload-length", "tus-resumable"}
    assert required("patch", "/v1/uploads/{upload_id}") == {"upload-offset", "tus-resumable"}

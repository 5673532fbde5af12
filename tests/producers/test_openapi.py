"""schemathesis against the API's own OpenAPI schema: whatever a client sends, valid by the schema or not, the API
never answers 5xx, and every answer (status, content type, headers, body) is one the schema promises."""

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
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session

from core.blobs import BlobStore
from core.config import Settings
from core.db import open_database
from core.devices import add_device
from producers.api.app import create_app
from producers.api.deps import Services
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
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
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            answered[(case.operation.label, response.status_code)] += 1

        answers_within_the_schema()
    print("\n".join(f"{label}: HTTP {code} x{count}" for (label, code), count in sorted(answered.items())))
    assert {label for label, _ in answered} == {operation.label for operation in operations}
    # The generated cases get past authentication and the protocol checks, to the routes' own answers.
    reached = {("POST /v1/photos", 202), ("GET /v1/jobs/{job_id}", 404), ("HEAD /v1/uploads/{upload_id}", 404)}
    assert reached <= set(answered)

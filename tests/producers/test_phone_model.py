"""GET /v1/model and GET /v1/model/<sha256>.onnx: the champion's phone build for the farmer's app, its description
with an ETag, its bytes cached for good, and 503 with Retry-After while a build is being made."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from core.config import settings
from core.phone_model import PhoneBuilds
from core.serving import PHONE_RUNTIME, ensure_phone_build, prebuilt_path
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.tables import ModelVersion

SHIPPED = prebuilt_path(settings.model_path, PHONE_RUNTIME)


def test_the_manifest_is_the_builds_json_with_its_size_and_address(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.get("/v1/model", headers=auth)
    assert answer.status_code == 200, answer.text
    manifest = answer.json()
    shipped = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert {key: manifest[key] for key in shipped} == shipped  # every member of the export's JSON, as it is
    assert manifest["size_bytes"] == SHIPPED.stat().st_size
    assert manifest["url"] == f"/v1/model/{shipped['sha256']}.onnx"
    assert {"model_version", "sha256", "precision", "classes", "preprocessing", "quality_thresholds",
            "leaf_gate"} <= set(manifest)  # fmt: skip
    assert answer.headers["etag"] == f'"{shipped["sha256"]}"'
    assert answer.headers["cache-control"] == "no-cache"
    same = client.get("/v1/model", headers=auth | {"If-None-Match": answer.headers["etag"]})
    assert same.status_code == 304
    assert same.content == b""
    other = client.get("/v1/model", headers=auth | {"If-None-Match": '"another-build"'})
    assert other.status_code == 200


def test_the_bytes_are_the_builds_cached_for_good_and_no_other_sha_is_served(
    client: TestClient, auth: dict[str, str]
) -> None:
    manifest = client.get("/v1/model", headers=auth).json()
    answer = client.get(manifest["url"], headers=auth)
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == manifest["sha256"]
    assert len(answer.content) == manifest["size_bytes"]
    assert answer.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert answer.headers["content-type"] == "application/octet-stream"
    part = client.get(manifest["url"], headers=auth | {"Range": "bytes=0-99"})  # a download cut on 2G resumes
    assert (part.status_code, part.content) == (206, answer.content[:100])
    assert client.get(f"/v1/model/{'0' * 64}.onnx", headers=auth).status_code == 404
    assert client.get("/v1/model/not-a-sha.onnx", headers=auth).status_code == 422
    assert client.get(manifest["url"]).status_code == 401
    assert client.get("/v1/model").status_code == 401


def test_a_build_being_made_is_503_with_retry_after_until_it_is_ready(
    services: Services, auth: dict[str, str], tmp_path: Path
) -> None:
    """After a promotion the champion has no phone build yet: it is made once, off the requests, and phones are
    told to come back meanwhile; then it is served."""
    gate, made = threading.Event(), []

    def slow_make(row: ModelVersion) -> Path:
        made.append(row.version)
        assert gate.wait(60)
        return ensure_phone_build(services.settings, services.blobs, row)  # here a copy of the shipped build

    services.phone_builds = PhoneBuilds(services.settings, services.blobs, make=slow_make, at_hand=lambda _: False)
    with TestClient(create_app(services, sweep_on_startup=False)) as client:
        try:
            waiting = [client.get("/v1/model", headers=auth) for _ in range(3)]
        finally:
            gate.set()
        deadline = time.monotonic() + 60
        while (ready := client.get("/v1/model", headers=auth)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [answer.status_code for answer in waiting] == [503, 503, 503]
    assert waiting[0].headers["retry-after"] == "60"
    assert waiting[0].headers["content-type"] == "application/problem+json"
    assert ready.status_code == 200
    assert len(made) == 1  # one build, however many phones asked meanwhile


def test_a_build_that_failed_is_tried_again(services: Services, tmp_path: Path) -> None:
    tries: list[str] = []
    done = threading.Event()

    def failing(row: ModelVersion) -> Path:
        tries.append(row.version)
        done.set()
        raise OSError("disk trouble")

    builds = PhoneBuilds(services.settings, services.blobs, make=failing, at_hand=lambda _: False)
    row = ModelVersion(version="v1", sha256="ab" * 32, blob_key="k", made_by="test")
    assert builds.ready(row) is None
    assert done.wait(30)
    deadline = time.monotonic() + 30
    while any(thread.is_alive() for thread in threading.enumerate() if thread.name == "phone-build-v1"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert builds.ready(row) is None
    deadline = time.monotonic() + 30
    while len(tries) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)

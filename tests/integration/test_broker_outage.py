"""Redis down at upload time: the photo is still accepted (durable on disk and in the database), and once Redis is
back the periodic sweeper enqueues it and the worker classifies it. Its own redis-server, so it can be stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import sample_bytes
from tests.utils.processes import RedisServer, free_port, start_mhogo, stop, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[LiveStack, RedisServer]]:
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    fast_sweeps = {"MHOGO_SWEEP_INTERVAL_S": "1", "MHOGO_SWEEP_RECEIVED_AFTER_S": "1"}
    try:
        with live_stack(tmp_path, f"sqlite:///{tmp_path / 'mhogo.db'}", server.url, fast_sweeps) as stack:
            beat = start_mhogo(["beat"], stack.env, tmp_path / "beat.log")
            try:
                yield stack, server
            finally:
                stop(beat)
    finally:
        server.stop()


def send(client: httpx.Client, kind: str, key: str) -> httpx.Response:
    headers = {"Content-Type": "image/jpeg", "Idempotency-Key": key}
    return client.post("/v1/photos", content=sample_bytes(kind), headers=headers)


def status(client: httpx.Client, job_id: str) -> str:
    return str(client.get(f"/v1/jobs/{job_id}").json()["status"])


def test_upload_while_redis_is_down_is_processed_once_it_is_back(outage: tuple[LiveStack, RedisServer]) -> None:
    stack, server = outage
    with stack.client(stack.new_token()) as client:
        first = send(client, "cmd", uuid.uuid4().hex).json()["job_id"]
        wait_for(lambda: status(client, first) == "classified", 60, "the photo sent while Redis was up")

        server.stop()
        response = send(client, "healthy", "during-outage")
        assert response.status_code == 202
        assert response.json()["status"] == "received"
        job_id = response.json()["job_id"]
        assert client.get("/healthz").status_code == 503
        assert status(client, job_id) == "received"

        server.start()
        wait_for(lambda: status(client, job_id) == "classified", 90, "the photo accepted during the outage")
        assert send(client, "healthy", "during-outage").json()["job_id"] == job_id

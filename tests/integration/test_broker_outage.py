"""Redis down at upload time: the photo is still accepted (durable on disk and in the database), and once Redis is
back the periodic sweeper enqueues it and the worker classifies it. Redis restarted in the middle of a run, with its
append-only file (as in production) and without (the queues lost): every photo still gets its one result. Its own
redis-server, so it can be stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import Job
from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import all_samples, sample_bytes
from tests.utils.processes import RedisServer, free_port, start_mhogo, stop, wait_for

pytestmark = pytest.mark.integration


FAST_SWEEPS = {"MHOGO_SWEEP_INTERVAL_S": "1", "MHOGO_SWEEP_RECEIVED_AFTER_S": "1"}


@contextmanager
def stack_on_own_redis(
    tmp_path: Path, sweeps: dict[str, str], data_dir: Path | None = None
) -> Iterator[tuple[LiveStack, RedisServer]]:
    """A live stack and beat on a redis-server of the test's own (persisting to `data_dir` if given)."""
    server = RedisServer(free_port(), tmp_path / "redis.log", data_dir)
    server.start()
    try:
        with live_stack(tmp_path, f"sqlite:///{tmp_path / 'mhogo.db'}", server.url, sweeps) as stack:
            beat = start_mhogo(["beat"], stack.env, tmp_path / "beat.log")
            try:
                yield stack, server
            finally:
                stop(beat)
    finally:
        server.stop()


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[LiveStack, RedisServer]]:
    with stack_on_own_redis(tmp_path, FAST_SWEEPS) as live:
        yield live


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


@pytest.fixture(params=["aof", "no persistence"])
def restartable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveStack, RedisServer]]:
    data_dir = tmp_path / "redis-data" if request.param == "aof" else None
    # Without persistence the queued messages are gone after the restart: the sweeper finds their jobs stale.
    with stack_on_own_redis(tmp_path, FAST_SWEEPS | {"MHOGO_SWEEP_STALE_AFTER_S": "20"}, data_dir) as live:
        yield live


def test_redis_restarted_mid_run_loses_no_photo(restartable: tuple[LiveStack, RedisServer]) -> None:
    stack, server = restartable
    photos = all_samples()
    ids = []
    with stack.client(stack.new_token()) as client:
        for index, path in enumerate(photos):
            if index == 20:  # a backlog waits in the queues: restart Redis under it
                server.stop()
            if index == 30:
                server.start()
            headers = {"Content-Type": "image/jpeg", "Idempotency-Key": uuid.uuid4().hex}
            response = client.post("/v1/photos", content=path.read_bytes(), headers=headers)
            assert response.status_code == 202  # accepted even while Redis is away: durable first
            ids.append(response.json()["job_id"])

        def statuses() -> dict[str, str]:  # from the database, in one query: polling each job through the API
            with Session(stack.engine) as session:  # would pass the per-device and per-address rate limits
                return dict(session.exec(select(Job.id, Job.status).where(col(Job.id).in_(ids))).all())

        wait_for(lambda: all(s in TERMINAL_STATUSES for s in statuses().values()), 180,
                 "every photo to finish after the restart")  # fmt: skip
        assert [job_id for job_id, s in statuses().items() if s == "failed"] == []
        assert {status(client, job_id) for job_id in ids} <= set(TERMINAL_STATUSES) - {"failed"}  # the API agrees
        assert client.get("/healthz").status_code == 200  # the API reconnected by itself
    with Session(stack.engine) as session:
        enqueued = [job.enqueue_count for job in session.exec(select(Job).where(col(Job.id).in_(ids))).all()]
    assert len(enqueued) == len(photos)
    if server.data_dir is None:  # the restart emptied the queues: the sweeper sent those jobs again
        assert max(enqueued) >= 2

"""The hostile corpus (tests/utils/hostile.py) against a live stack: every file the API takes ends `classified` or
`rejected` with its reason, never `failed` or stuck; what it refuses gets its 4xx from the real server; and the worker
is the same process afterwards, still diagnosing ordinary photos. SQLite only: the database plays no part here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from schemas.tables import Job
from tests.integration.conftest import LiveStack, live_stack
from tests.integration.test_pipeline import wait_final
from tests.utils.factories import sample_bytes
from tests.utils.hostile import CLASSIFIED, Hostile, corpus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sqlite_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp("stack-hostile")
    with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", redis_url) as live:
        yield live


def send(client: httpx.Client, item: Hostile) -> httpx.Response:
    """As a phone app or a browser form would: multipart, with the file's name and Content-Type."""
    files = {"photo": (item.name, item.data, item.content_type)}
    return client.post("/v1/photos", files=files, headers={"Idempotency-Key": uuid.uuid4().hex})


def outcome(body: dict[str, Any]) -> str:
    return CLASSIFIED if body["status"] == "classified" else str((body.get("rejection") or {}).get("reason"))


def errors_logged(log: Path) -> list[str]:
    """ERROR and CRITICAL records of a service's JSON log: a task that raised, a pool process that died."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [record["message"] for record in records if record.get("level") in {"ERROR", "CRITICAL"}]


def test_hostile_files_end_with_their_answer_and_the_worker_survives(sqlite_stack: LiveStack) -> None:
    worker = sqlite_stack.processes[0]
    accepted: dict[str, Hostile] = {}
    with sqlite_stack.client(sqlite_stack.new_token()) as client:
        for item in corpus():
            response = send(client, item)
            if item.refused:
                assert response.status_code == item.expected, (item.name, response.text)
                continue
            assert response.status_code == 202, (item.name, response.text)
            accepted[response.json()["job_id"]] = item
        results = wait_final(client, list(accepted), timeout=120)
        observed = {item.name: outcome(results[job_id]) for job_id, item in accepted.items()}
        assert observed == {item.name: item.expected for item in accepted.values()}
        for job_id, item in accepted.items():
            body = results[job_id]
            if body["status"] == "classified":  # every classified file is made from the same cmd photo
                assert body["result"]["label"] == "cmd", (item.name, body)
            else:
                assert body["rejection"]["message"], (item.name, body)
        assert worker.poll() is None
        ordinary = client.post(
            "/v1/photos",
            content=sample_bytes("cbb"),
            headers={"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "image/jpeg"},
        )
        assert ordinary.status_code == 202, ordinary.text
        job_id = ordinary.json()["job_id"]
        assert wait_final(client, [job_id])[job_id]["status"] == "classified"
    with Session(sqlite_stack.engine) as session:  # this module's stack: a job for each accepted file, no more
        assert session.exec(select(func.count()).select_from(Job)).one() == len(accepted) + 1
    assert worker.poll() is None
    assert errors_logged(sqlite_stack.home / "worker.log") == []

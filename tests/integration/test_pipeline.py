"""End to end through HTTP: real photos uploaded to the API, processed by a real Celery worker over the real Redis,
results read back; on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlmodel import Session, col, select

from core import registry, telemetry
from core.config import settings
from core.namespace import Namespace
from core.retraining import NO_HOLDOUT
from ml.checkpoint import load_checkpoint
from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import ClientEvent, Feedback, Job, ModelAliasName, ModelFeedbackCount, RetrainRun, RetrainStatus
from tests.integration.conftest import LiveStack
from tests.utils.factories import all_samples
from tests.utils.models import tiny_model
from tests.utils.processes import wait_for

pytestmark = pytest.mark.integration


def upload(client: httpx.Client, path: Path, key: str) -> httpx.Response:
    headers = {"Idempotency-Key": key, "Content-Type": "image/jpeg"}
    return client.post("/v1/photos", content=path.read_bytes(), headers=headers)


def wait_final(client: httpx.Client, job_ids: list[str], timeout: float = 90.0) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id not in done:
                body = client.get(f"/v1/jobs/{job_id}").json()
                if body["status"] in TERMINAL_STATUSES:
                    done[job_id] = body
        time.sleep(0.3)
    missing = set(job_ids) - set(done)
    assert not missing, f"{len(missing)} jobs not finished within {timeout} s"
    return done


def test_every_sample_photo_gets_a_diagnosis_or_a_reason(stack: LiveStack) -> None:
    photos = all_samples()
    with stack.client(stack.new_token()) as client:
        accepted = {}
        for path in photos:
            response = upload(client, path, uuid.uuid4().hex)
            assert response.status_code == 202, response.text
            accepted[response.json()["job_id"]] = path
        results = wait_final(client, list(accepted))
    version = load_checkpoint(settings.model_path).version
    right = cassava = 0
    for job_id, body in results.items():
        path = accepted[job_id]
        assert body["status"] in {"classified", "rejected"}, (path.name, body)
        if path.name.startswith("hand_"):
            assert body["rejection"]["reason"] == "too_small"
        if path.parent.name == "negatives":  # the leaf gate was fitted on these: every one must be turned away
            assert body["status"] == "rejected", (path.name, body)
        if path.name.startswith("banana_leaf"):
            assert body["rejection"]["reason"] == "not_cassava_leaf"
            assert "cassava leaf" in body["rejection"]["message"]
        if body["status"] == "classified":
            assert body["result"]["model_version"] == version
            assert set(body["timings_ms"]) == {"decode", "prepare", "model", "end_to_end"}
            assert body["timings_ms"]["end_to_end"] >= sum(body["timings_ms"][s] for s in ("decode", "model"))
        if path.parent.parent.name == "cassava":
            cassava += 1
            right += body["status"] == "classified" and body["result"]["label"] == path.parent.name
    assert right / cassava >= 0.6


def test_repeats_with_one_key_make_one_job_even_at_the_same_moment(stack: LiveStack) -> None:
    photos = all_samples()[:20]
    keys = {path: hashlib.sha256(path.read_bytes() + b"repeat").hexdigest() for path in photos}
    with stack.client(stack.new_token()) as client:
        # Three at once, the three repeats of one key: one phone holds at most MHOGO_MAX_UPLOADS_IN_FLIGHT (4).
        with ThreadPoolExecutor(max_workers=3) as pool:
            sends = [pool.submit(upload, client, path, keys[path]) for path in photos for _ in range(3)]
            responses = [send.result() for send in sends]
        assert all(r.status_code == 202 for r in responses)
        job_ids = {r.json()["job_id"] for r in responses}
        assert len(job_ids) == len(photos)
        wait_final(client, sorted(job_ids))
    with Session(stack.engine) as session:
        rows = session.exec(select(Job).where(col(Job.idempotency_key).in_(keys.values()))).all()
    assert len(rows) == len(photos)


def test_feedback_travels_the_events_queue_into_the_counts(stack: LiveStack) -> None:
    path = all_samples()[0]
    with stack.client(stack.new_token()) as client:
        job_id = upload(client, path, uuid.uuid4().hex).json()["job_id"]
        body = wait_final(client, [job_id])[job_id]
        assert body["status"] == "classified"
        predicted = body["result"]["label"]
        version = body["result"]["model_version"]
        correction = "cgm" if predicted != "cgm" else "cmd"
        response = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": correction})
        assert response.status_code == 202
        event_id = response.json()["event_id"]

    def stored() -> Feedback | None:
        with Session(stack.engine) as session:
            return session.get(Feedback, event_id)

    feedback = wait_for(stored, 30, "the feedback event to be stored")
    assert isinstance(feedback, Feedback)
    assert (feedback.predicted_label, feedback.agrees, feedback.model_version) == (predicted, False, version)
    assert (feedback.source, feedback.agronomist) == ("farmer", None)
    assert feedback.device_id is not None  # the device whose token sent it
    with Session(stack.engine) as session:
        count = session.get(ModelFeedbackCount, (version, "farmer"))
    assert count is not None
    assert count.corrected >= 1


# The two longest tests run on the production database only: what differs between the two databases (the storage
# functions, the registry, the locks) has its tests on both in tests/core; these add minutes, not coverage.
POSTGRESQL_ONLY = pytest.mark.parametrize("stack", ["postgresql"], indirect=True)


@POSTGRESQL_ONLY
def test_an_operator_run_trains_a_challenger_on_its_own_queue(stack: LiveStack) -> None:
    run_id = int(mhogo(stack, "retrain", "--reason", "test", "--by", "ops"))

    def finished() -> RetrainRun | None:
        with Session(stack.engine) as session:
            run = session.get(RetrainRun, run_id)
            return run if run is not None and not RetrainStatus(run.status).open else None

    run = wait_for(finished, 180, "the retraining run to finish")
    assert isinstance(run, RetrainRun)
    assert run.status == RetrainStatus.KEPT
    assert run.decision == NO_HOLDOUT
    assert run.rule == "operator"
    assert run.fired_by == "ops"
    assert run.dataset["base_photos"] == 50
    checkpoint = load_checkpoint(stack.home / "models" / f"challenger-run{run_id}.pt")
    assert checkpoint.meta["made_by"] == f"retraining run {run_id} (operator)"
    assert checkpoint.meta["dataset_size"] == 60  # 50 cassava photos and the 10 negatives
    assert checkpoint.leaf_gate is not None  # a retrained model turns away what is not a cassava leaf too
    assert checkpoint.meta["input_reference"]["photos"] > 0  # and knows its inputs, for drift
    with Session(stack.engine) as session:
        assert (
            registry.alias_version(session, ModelAliasName.CHALLENGER) == checkpoint.version == run.challenger_version
        )
        row = registry.get_version(session, checkpoint.version)
        assert row.parent_version == registry.alias_version(session, ModelAliasName.CHAMPION) == run.champion_version
        assert row.made_by == f"retraining run {run_id} (operator)"


def mhogo(stack: LiveStack, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mhogo", *args], env=stack.env, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


@POSTGRESQL_ONLY
def test_promote_and_rollback_switch_the_running_workers_without_a_restart(stack: LiveStack) -> None:
    baseline = load_checkpoint(settings.model_path).version
    challenger = mhogo(stack, "models", "register", str(tiny_model(stack.home)), "--challenger")
    worker = stack.processes[0]
    path = all_samples()[3]

    def served_by() -> str:
        with stack.client(stack.new_token()) as client:
            job_id = upload(client, path, uuid.uuid4().hex).json()["job_id"]
            return str(wait_final(client, [job_id])[job_id]["result"]["model_version"])

    assert served_by() == baseline
    assert mhogo(stack, "models", "promote", challenger) == f"champion: {challenger} (was {baseline})"
    wait_for(lambda: served_by() == challenger, 30, "the workers to serve the promoted model")
    assert mhogo(stack, "models", "rollback") == f"champion: {baseline} (was {challenger})"
    wait_for(lambda: served_by() == baseline, 30, "the workers to serve the model rolled back to")
    assert worker.poll() is None  # the same worker process all along


def test_worker_logs_are_json_with_the_job_id(stack: LiveStack) -> None:
    path = all_samples()[0]
    with stack.client(stack.new_token()) as client:
        response = upload(client, path, uuid.uuid4().hex)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert wait_final(client, [job_id])[job_id]["status"] == "classified"

    def job_lines(log: Path) -> list[dict[str, Any]]:
        """The records of a service's log about this job. Every record must be JSON; text written straight to the
        stream by no logger (the retraining's progress bars, Celery's shutdown notice) is passed over."""
        parsed = []
        for number, line in enumerate(log.read_text().split("\n"), 1):
            if not line.startswith("{"):
                continue
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{log.name}:{number} is not JSON: {line[:300]}")
        return [line for line in parsed if line.get("job_id") == job_id]

    accepted = job_lines(stack.home / "api.log")
    assert [line["message"] for line in accepted] == ["photo accepted"]
    assert (accepted[0]["level"], accepted[0]["service"]) == ("INFO", "api")
    assert (accepted[0]["replayed"], accepted[0]["size_bytes"]) == (False, path.stat().st_size)

    stages = {"mhogo.inference.diagnose"}

    def succeeded() -> set[str]:  # Celery's own lines, through our handler, with the job id
        return {
            line["task"]
            for line in job_lines(stack.home / "worker.log")
            if line["logger"] == "celery.app.trace" and "succeeded" in line["message"]
        }

    # The job is finished before the task's `succeeded` line is written: wait for it.
    wait_for(lambda: succeeded() == stages, 10, "a `succeeded` line from the task")
    lines = job_lines(stack.home / "worker.log")
    assert all(line["service"] == "worker" for line in lines)
    assert all({"time", "level", "logger", "message", "task", "task_id"} <= set(line) for line in lines)
    outcome = [line for line in lines if line["message"] == "job classified"]
    assert [(line["level"], line["task"]) for line in outcome] == [("INFO", "mhogo.inference.diagnose")]


def client_events_counted(redis_url: str, namespace: Namespace) -> float:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(v for name, _, v in telemetry.read(client, namespace) if name == "mhogo_client_events_total")
    finally:
        client.close()


def test_phone_events_are_stored_once_per_event_id(stack: LiveStack) -> None:
    events = [{"event_id": f"evt-{uuid.uuid4().hex}", "kind": "upload_retried", "at": "2026-11-29T10:00:00Z",
               "data": {"attempt": n}} for n in range(3)]  # fmt: skip
    counted = client_events_counted(stack.env["MHOGO_REDIS_URL"], stack.namespace)
    with stack.client(stack.new_token()) as client:
        for _ in range(2):  # the phone did not hear the first answer and sends the batch again
            assert client.post("/v1/events", json=events).status_code == 202
    wait_for(lambda: client_events_counted(stack.env["MHOGO_REDIS_URL"], stack.namespace) >= counted + 6, 30,
             "both batches handled")  # fmt: skip
    ids = [e["event_id"] for e in events]
    with Session(stack.engine) as session:
        assert len(session.exec(select(ClientEvent).where(col(ClientEvent.id).in_(ids))).all()) == 3

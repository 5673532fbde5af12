"""Faults on the real stack (the API, a Celery worker, SQLite): the phone client killed with SIGKILL in the middle of
sending, then started again, gets exactly one job and one result per photo; a job that cannot succeed ends `failed`
with its reason after a bounded number of tries, waits among the dead letters, and goes through once requeued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from core.devices import add_device
from producers.phone import Outbox
from schemas.tables import Job
from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import all_samples, make_job
from tests.utils.processes import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp("phone-stack")
    with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", redis_url) as live:
        yield live


def phone(stack: LiveStack, token: str, outbox: Path, *args: str) -> subprocess.Popen[str]:
    env = stack.env | {"MHOGO_PHONE_TOKEN": token, "MHOGO_PUBLIC_URL": stack.api_url}
    command = [sys.executable, "-m", "core", "phone", *args, "--outbox", str(outbox)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_phone_killed_mid_sync_sends_each_photo_once(stack: LiveStack, tmp_path: Path) -> None:
    token, outbox = stack.new_token("killed phone"), tmp_path / "outbox"
    photos = all_samples()
    taken = phone(stack, token, outbox, "take", *map(str, photos))
    out, err = taken.communicate(timeout=120)
    assert taken.returncode == 0, err
    keys = [line.split()[0] for line in out.splitlines()]
    assert len(keys) == len(photos)

    def sent() -> int:
        box = Outbox(outbox)
        try:
            return len(box.photos("sent")) + len(box.photos("done"))
        finally:
            box.close()

    first = phone(stack, token, outbox, "sync", "--timeout", "300")
    wait_for(lambda: sent() >= 10, 60, "the phone to send some photos")
    os.kill(first.pid, signal.SIGKILL)  # the app killed mid-upload: no chance to tidy up
    first.communicate(timeout=10)
    assert sent() < len(photos)  # it really stopped halfway
    second = phone(stack, token, outbox, "sync", "--timeout", "300")
    out, err = second.communicate(timeout=360)
    assert second.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    with Session(stack.engine) as session:
        jobs = session.exec(select(Job).where(col(Job.idempotency_key).in_(keys))).all()
    assert len(jobs) == len(photos)  # one job per photo, none twice
    assert all(job.status in ("classified", "rejected") for job in jobs)
    box = Outbox(outbox)
    try:
        done = box.photos("done")
    finally:
        box.close()
    assert len(done) == len(photos)
    assert {p.job_id for p in done} == {job.id for job in jobs}
    assert all(p.result is not None for p in done)
    assert len(results) >= len(photos) - 10  # the second run reports what it finished


def mhogo(stack: LiveStack, *args: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-m", "core", *args], env=stack.env | env, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    return done.stdout


def test_a_job_that_cannot_succeed_becomes_a_dead_letter_and_is_requeued_once_fixed(stack: LiveStack) -> None:
    photo = all_samples()[0].read_bytes()
    with Session(stack.engine, expire_on_commit=False) as session:
        device, _ = add_device(session, "dead letters")
        job = make_job(session, device, key=uuid.uuid4().hex, data=photo)  # its photo never reached the blob store
        job_id, blob = job.id, stack.home / "blobs" / job.blob_key
    assert not blob.exists()
    mhogo(stack, "sweep", MHOGO_SWEEP_RECEIVED_AFTER_S="0")  # as the sweeper would, a little later

    def status() -> str:
        with Session(stack.engine) as session:
            found = session.get(Job, job_id)
            assert found is not None
            return str(found.status)

    wait_for(lambda: status() == "failed", 60, "the job to fail")
    time.sleep(2)
    assert status() == "failed"  # it stays failed: no loop
    assert job_id in mhogo(stack, "jobs", "failed")
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(photo)  # the operator restores the photo
    assert f"{job_id}  queued" in mhogo(stack, "jobs", "requeue", job_id)
    wait_for(lambda: status() in ("classified", "rejected"), 60, "the requeued job to finish")
    assert mhogo(stack, "jobs", "requeue", job_id) == ""  # not failed any more: left as it is

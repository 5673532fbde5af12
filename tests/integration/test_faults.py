"""Faults on the real stack (the API, a Celery worker, SQLite): the phone client killed with SIGKILL in the middle of
sending, then started again, gets exactly one job and one result per photo; a job that cannot succeed ends `failed`
with its reason after a bounded number of tries, waits among the dead letters, and goes through once requeued; worker
pool processes killed in the middle of a photo lose none and store none twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlmodel import Session, col, select

from core.devices import add_device
from producers.phone import Backoff, Outbox, Phone
from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import Job
from tests.integration.conftest import LiveStack, live_stack
from tests.utils.factories import all_samples, make_job
from tests.utils.faultproxy import FaultProxy
from tests.utils.pool import (
    RunningPhoto,
    StoredOutcome,
    gone,
    job_log,
    running_photos,
    stored_outcomes,
    times_stored,
)
from tests.utils.processes import wait_for

pytestmark = pytest.mark.integration
PHOTOS_THROUGH_PROXY = 60  # bench/faults.py sends 500
KILL_RUN_PHOTOS = 60  # bench/faults.py --kill 10 sends 1,000
KILLS = 10


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp("phone-stack")
    with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", redis_url) as live:
        yield live


def phone(stack: LiveStack, token: str, outbox: Path, *args: str) -> subprocess.Popen[str]:
    env = stack.env | {"MHOGO_PHONE_TOKEN": token, "MHOGO_PUBLIC_URL": stack.api_url}
    command = [sys.executable, "-m", "mhogo", "phone", *args, "--outbox", str(outbox)]
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
    done = subprocess.run([sys.executable, "-m", "mhogo", *args], env=stack.env | env, capture_output=True, text=True,
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
    # No loop: its task was delivered once, failed once for good and was never retried, so nothing runs it again.
    log = stack.home / "worker.log"
    ends = ("raised unexpected", "succeeded in", "retry:")  # Celery's lines for a try that failed, ended, or retries
    wait_for(lambda: any(end in line for line in job_log(log, job_id) for end in ends), 30, "the task's first try")
    lines = job_log(log, job_id)
    assert [sum(line.endswith("] received") for line in lines), lines.count("job failed")] == [1, 1], lines
    assert not [line for line in lines if "retry:" in line or "succeeded in" in line], lines
    assert status() == "failed"
    assert job_id in mhogo(stack, "jobs", "failed")
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(photo)  # the operator restores the photo
    assert f"{job_id}  queued" in mhogo(stack, "jobs", "requeue", job_id)
    wait_for(lambda: status() in ("classified", "rejected"), 60, "the requeued job to finish")
    assert mhogo(stack, "jobs", "requeue", job_id) == ""  # not failed any more: left as it is


def send_through(
    stack: LiveStack,
    proxy: FaultProxy,
    photos: list[Path],
    folder: Path,
    resumable_above: int = 32 * 1024,
    timeout_s: float = 10.0,
    chunk_bytes: int = 16 * 1024,
    sync_timeout_s: float = 600,
) -> tuple[list[Any], list[Job]]:
    """Every photo taken into a fresh outbox and synced through the proxy until done: the outbox and the jobs.
    Photos over `resumable_above` bytes go by resumable upload in `chunk_bytes` chunks (by default about half the
    samples, in 16 KiB)."""
    token = stack.new_token("phone on a bad link")
    outbox = Outbox(folder)
    try:
        taken = [outbox.take(path) for path in photos]
        headers = {"Authorization": f"Bearer {token}"}
        # A new connection per request, as on a link where none lives long: each one takes its chance with the proxy.
        limits = httpx.Limits(max_keepalive_connections=0)
        url = f"http://127.0.0.1:{proxy.port}"
        with httpx.Client(base_url=url, headers=headers, timeout=timeout_s, limits=limits) as client:
            device = Phone(outbox, client, backoff=Backoff(base_s=0.2, cap_s=2.0), rng=random.Random(5),
                           resumable_above=resumable_above, chunk_bytes=chunk_bytes)  # fmt: skip
            for _ in device.sync(timeout_s=sync_timeout_s, tick_s=0.1):
                pass
        done = outbox.photos("done")
    finally:
        outbox.close()
    with Session(stack.engine) as session:
        jobs = session.exec(select(Job).where(col(Job.idempotency_key).in_([p.key for p in taken]))).all()
    return done, list(jobs)


def test_photos_through_a_link_that_cuts_a_third_of_connections_make_one_job_and_one_result_each(
    stack: LiveStack, tmp_path: Path
) -> None:
    photos = [all_samples()[i % 60] for i in range(PHOTOS_THROUGH_PROXY)]
    with FaultProxy(int(stack.api_url.rsplit(":", 1)[1]), cut=0.3) as proxy:
        done, jobs = send_through(stack, proxy, photos, tmp_path / "outbox")
    print(f"proxy: {dict(proxy.stats)}")
    assert proxy.stats["cut_request"] > 0
    assert proxy.stats["cut_response"] > 0
    assert len(done) == len(photos)  # every photo has its result on the phone
    assert len(jobs) == len(photos)  # one job each: nothing lost, nothing twice
    assert {p.job_id for p in done} == {job.id for job in jobs}
    assert all(job.status in ("classified", "rejected") for job in jobs)
    assert sum(job.size_bytes > 32 * 1024 for job in jobs) > len(jobs) / 4  # a good share came in chunks


def test_a_link_that_drops_every_few_kb_still_delivers_by_resumable_upload(stack: LiveStack, tmp_path: Path) -> None:
    """Every connection dropped after 6 KB towards the server, so no 64 KiB chunk ever arrives whole: the server keeps
    what came of each (tus 1.0), the phone asks where it stands and sends the rest. Before, the phone sent each chunk
    with a checksum, the server dropped every part it could not verify, and the upload never moved."""
    photos = [path for path in all_samples() if path.stat().st_size > 20_000][:2]
    with FaultProxy(int(stack.api_url.rsplit(":", 1)[1]), drop_after_bytes=6000) as proxy:
        done, jobs = send_through(stack, proxy, photos, tmp_path / "outbox", resumable_above=0, chunk_bytes=64 * 1024,
                                  sync_timeout_s=240)  # fmt: skip
    print(f"proxy: {dict(proxy.stats)}")
    assert len(done) == len(jobs) == len(photos)
    assert proxy.stats["dropped"] >= sum(job.size_bytes for job in jobs) // 6000  # a part of each cut PATCH kept
    assert all(job.status in ("classified", "rejected") for job in jobs)


def test_a_2g_link_that_stalls_still_delivers(stack: LiveStack, tmp_path: Path) -> None:
    """50 kbit/s, and some connections silent for longer than the phone waits; every photo by resumable upload."""
    photos = all_samples()[:2]
    with FaultProxy(int(stack.api_url.rsplit(":", 1)[1]), stall=0.3, stall_s=6, rate_bytes_s=6250) as proxy:
        # The phone waits 5 s for an answer; a 16 KiB chunk takes under 3 s at this speed, a stall longer.
        done, jobs = send_through(stack, proxy, photos, tmp_path / "outbox", resumable_above=0, timeout_s=5)
    assert len(done) == len(jobs) == len(photos)


@dataclass(frozen=True)
class Kill:
    photo: RunningPhoto  # what the process was running when it was killed
    at: float  # time.time() just before the SIGKILL


def job_status(stack: LiveStack, job_id: str) -> str | None:
    with Session(stack.engine) as session:
        job = session.get(Job, job_id)
        return None if job is None else str(job.status)


def kill_busy_pool_processes(
    stack: LiveStack,
    job_ids: list[str],
    uploading: Future[None],
    count: int,
    rng: random.Random,
    pause_s: tuple[float, float] = (0.3, 1.2),
    give_up_s: float = 120,
) -> list[Kill]:
    """SIGKILL a pool process `count` times, each time one that holds a photo of `job_ids` (filled as the photos are
    uploaded) whose job is claimed (`processing`) and not finished: a process in the middle of the work, never an
    idle one. Stops early when every photo is uploaded and finished."""
    kills: list[Kill] = []
    deadline = time.monotonic() + give_up_s
    while len(kills) < count and time.monotonic() < deadline:
        ours = set(job_ids)
        held = [photo for photo in running_photos(stack.celery, stack.worker_name) if photo.job_id in ours]
        # The worker may still list a task of a process killed a moment ago: only live processes count.
        busy = [photo for photo in held if not gone(photo.pid) and job_status(stack, photo.job_id) == "processing"]
        if not busy:
            if uploading.done() and not held and all(job_status(stack, i) in TERMINAL_STATUSES for i in ours):
                break
            time.sleep(0.02)
            continue
        target, at = rng.choice(busy), time.time()
        try:
            os.kill(target.pid, signal.SIGKILL)
        except ProcessLookupError:  # it died since we looked
            continue
        kills.append(Kill(target, at))
        wait_for(partial(gone, target.pid), 10, f"pool process {target.pid} to die")
        time.sleep(rng.uniform(*pause_s))  # the pool starts a new process, which loads the model
    return kills


def landed_mid_task(stack: LiveStack, kills: list[Kill], outcomes: list[StoredOutcome]) -> list[Kill]:
    """The kills that hit a process in the middle of its photo: the photo's outcome was stored after the kill (the
    killed process, dead, did not store it), by the same task delivered again, and that task was started more than
    once."""
    stored = {outcome.job_id: outcome for outcome in outcomes}
    deliveries = redis.Redis.from_url(stack.env["MHOGO_REDIS_URL"])
    landed = []
    for kill in kills:
        outcome = stored.get(kill.photo.job_id)
        started = int(deliveries.get(f"{stack.namespace.deliveries}:{kill.photo.task_id}") or 0)  # core/deliveries.py
        if outcome is not None and outcome.at > kill.at and outcome.task_id == kill.photo.task_id and started >= 2:
            landed.append(kill)
    return landed


def upload(stack: LiveStack, token: str, photos: list[Path], job_ids: list[str]) -> None:
    with stack.client(token) as client:
        for path in photos:
            headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "image/jpeg"}
            job_ids.append(client.post("/v1/photos", content=path.read_bytes(), headers=headers).json()["job_id"])


def test_worker_processes_killed_mid_run_lose_no_photo_and_process_none_twice(stack: LiveStack) -> None:
    """SIGKILL a pool process ten times, each in the middle of a photo, while photos flow: the task it held goes
    back to the queue (acks late, reject on worker lost), the pool starts a new process, another delivery of that
    same task stores the outcome, and every photo's outcome is stored exactly once."""
    photos = [all_samples()[i % 60] for i in range(KILL_RUN_PHOTOS)]
    with Session(stack.engine, expire_on_commit=False) as session:
        _, token = add_device(session, "phone during kills")
    ids: list[str] = []
    with ThreadPoolExecutor(1) as uploader:
        uploading = uploader.submit(upload, stack, token, photos, ids)
        kills = kill_busy_pool_processes(stack, ids, uploading, KILLS, random.Random(11))
        uploading.result()

    def finished() -> list[Job]:
        with Session(stack.engine) as session:
            return list(session.exec(select(Job).where(col(Job.id).in_(ids))).all())

    wait_for(lambda: all(job.status in TERMINAL_STATUSES for job in finished()), 120,
             "every photo to finish after the kills")  # fmt: skip
    jobs = finished()
    assert len(jobs) == len(photos)
    assert [job.id for job in jobs if job.status == "failed"] == []  # a redelivery is not a failure
    assert stack.processes[0].poll() is None  # the worker itself lives on

    # One stored outcome per job, counted where the worker stores it: none lost, none processed twice.
    log, ours = stack.home / "worker.log", set(ids)
    wait_for(lambda: all(times_stored(log, ours).values()), 10, "the worker's log line of every finished job")
    assert {job_id: n for job_id, n in times_stored(log, ours).items() if n != 1} == {}
    landed = landed_mid_task(stack, kills, stored_outcomes(log, ours))
    print(f"kills: {len(kills)}, mid-task and redelivered: {len(landed)}")
    assert len(kills) == KILLS
    assert len(landed) >= KILLS - 2  # a task may end in the instant between looking and killing; not more often

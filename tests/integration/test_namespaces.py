"""Deployments sharing one Redis database share nothing. Two stacks (two MHOGO_HOMEs, two databases) with a real
worker each on one Redis database (of a redis-server of the test's own, so that every key on it is theirs: on the
run's, another test run's keys may turn up): every photo is diagnosed by its own deployment's worker, and every key
either writes is under its own namespace. Where two databases do share a deployment id (a copy of one restored
beside it), a worker refuses the other's tasks loudly, never acknowledges them as done, and they still reach the
right worker. A worker, or the API, started on a database of another deployment does not start."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlmodel import Session, col, select

from core import telemetry
from core.db import open_database
from core.namespace import Namespace, deployment_id
from schemas.statuses import TERMINAL_STATUSES, JobStatus
from schemas.tables import Job
from tests.integration.conftest import LiveStack, live_stack, worker_answers
from tests.utils.factories import all_samples
from tests.utils.pool import job_log, times_stored
from tests.utils.processes import RedisServer, free_port, wait_for

pytestmark = pytest.mark.integration

REFUSED = "is unknown to this deployment's database"
PHOTOS = all_samples()


def keys(client: redis.Redis) -> set[str]:
    return {key.decode() for key in client.scan_iter(count=1000)}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveStack, LiveStack, set[str]]]:
    """Deployments A and B, one worker process each, on the same Redis database; and the keys it held before."""
    homes = [tmp_path_factory.mktemp(f"deployment-{name}") for name in "ab"]
    server = RedisServer(free_port(), homes[0] / "redis.log")
    server.start()
    before = keys(redis.Redis.from_url(server.url))
    with ExitStack() as stacks:
        stacks.callback(server.stop)
        a, b = (stacks.enter_context(live_stack(home, f"sqlite:///{home / 'mhogo.db'}", server.url, concurrency=1))
                for home in homes)  # fmt: skip
        for name, stack in (("A", a), ("B", b)):
            wait_for(partial(worker_answers, stack.celery, stack.worker_name), 60, f"{name}'s worker")
        yield a, b, before


def upload(stack: LiveStack, photos: list[Path]) -> list[str]:
    with stack.client(stack.new_token()) as client:
        return [
            client.post("/v1/photos", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg",
                        "Idempotency-Key": uuid.uuid4().hex}).json()["job_id"]
            for photo in photos
        ]  # fmt: skip


def statuses(stack: LiveStack, job_ids: list[str]) -> dict[str, str]:
    with Session(stack.engine) as session:
        rows = session.exec(select(Job).where(col(Job.id).in_(job_ids))).all()
        return {row.id: str(row.status) for row in rows}


def finished(stack: LiveStack, job_ids: list[str]) -> bool:
    found = statuses(stack, job_ids)
    return len(found) == len(job_ids) and all(status in TERMINAL_STATUSES for status in found.values())


def test_each_deployment_s_photos_are_diagnosed_by_its_own_worker(two: tuple[LiveStack, LiveStack, set[str]]) -> None:
    """Before namespaces both workers took from one `inference` list: a worker on the other database took 8 of 12
    photos and acknowledged each as "already finished", and they stayed queued until the 15-minute sweep."""
    a, b, before = two
    assert a.namespace != b.namespace
    with ThreadPoolExecutor(2) as pool:  # both deployments' phones at once
        sent_a, sent_b = pool.map(upload, (a, b), (PHOTOS[0:12:2], PHOTOS[1:12:2]))
    wait_for(lambda: finished(a, sent_a) and finished(b, sent_b), 240, "every photo of both deployments")
    for stack, sent, other in ((a, sent_a, sent_b), (b, sent_b, sent_a)):
        assert set(statuses(stack, sent).values()) <= {JobStatus.CLASSIFIED, JobStatus.REJECTED}
        log = stack.home / "worker.log"
        assert times_stored(log, set(sent)) == dict.fromkeys(sent, 1)  # each stored once, by its own worker
        assert sum(times_stored(log, set(other)).values()) == 0  # none of the other deployment's
        assert all(not job_log(log, job_id) for job_id in other)  # never even delivered to it
        assert REFUSED not in log.read_text()
    # Every key the two deployments wrote (queues, kombu's bookkeeping, events, counters, deliveries, locks) is
    # under one of their namespaces.
    client = redis.Redis.from_url(a.env["MHOGO_REDIS_URL"])
    written = keys(client) - before
    assert {key for key in written if not key.startswith((a.namespace.prefix, b.namespace.prefix))} == set()
    assert {a.namespace.key("deliveries"), b.namespace.key("deliveries")} <= {key.rsplit(":", 1)[0] for key in written}
    assert [diagnosed(client, stack.namespace) for stack in (a, b)] == [6, 6]  # and its counters, none of the other's


def test_a_task_its_database_does_not_know_is_refused_and_reaches_its_deployment(
    two: tuple[LiveStack, LiveStack, set[str]], tmp_path: Path
) -> None:
    """C's database carries A's deployment id (a copy restored beside A's): the two share a namespace. While C's
    worker takes no photos, A's worker gets each of C's and refuses it (an error, back to the queue, then set aside
    in the namespace's `refused` list), never acknowledging it as done; C's jobs stay queued. When C's worker takes
    photos again, C's sweep sends the set-aside tasks again (A's worker may refuse one again) until C's worker has
    diagnosed every one. (C's operator runs the sweep, `mhogo sweep`: the twins' beats send their ticks to one queue,
    and A's worker, first in line each time, once took 174 of 177.)"""
    a = two[0]
    redis_url = a.env["MHOGO_REDIS_URL"]
    url = f"sqlite:///{tmp_path / 'mhogo.db'}"
    with Session(open_database(url)) as session:
        session.execute(text("UPDATE deployment SET id = :id"), {"id": a.namespace.deployment})
        session.commit()
    with live_stack(tmp_path, url, redis_url, concurrency=1) as c:
        assert c.namespace == a.namespace
        wait_for(lambda: worker_answers(c.celery, c.worker_name), 60, "C's worker")
        stopped = c.celery.control.cancel_consumer("inference", destination=[c.worker_name], reply=True)
        assert [list(reply) for reply in stopped] == [[c.worker_name]]
        sent = upload(c, PHOTOS[12:16])
        refused = a.namespace.refused
        client = redis.Redis.from_url(redis_url)
        wait_for(lambda: set_aside(client, refused, sent) == set(sent), 120, "A's worker to set C's photos aside")
        log_a = a.home / "worker.log"
        for job_id in sent:
            lines = job_log(log_a, job_id)
            assert sum(REFUSED in line for line in lines) == 5  # MHOGO_MAX_DELIVERIES deliveries, each refused
            assert not [line for line in lines if "succeeded" in line or "already finished" in line]
        assert set(statuses(c, sent).values()) == {JobStatus.QUEUED}  # not done, and not taken for done
        c.celery.control.add_consumer("inference", destination=[c.worker_name], reply=True)

        def swept_until_done() -> bool:
            subprocess.run([sys.executable, "-m", "mhogo", "sweep"], env=c.env, capture_output=True, check=True)
            return finished(c, sent)

        wait_for(swept_until_done, 180, "C's worker to diagnose C's photos", interval=1)
        assert times_stored(c.home / "worker.log", set(sent)) == dict.fromkeys(sent, 1)
        assert sum(times_stored(log_a, set(sent)).values()) == 0
        assert set_aside(client, refused, sent) == set()
        # In /metrics the refusals count as rejected tasks, not as succeeded ones.
        assert diagnosed(client, a.namespace, "rejected") >= 5 * len(sent)


def diagnosed(client: redis.Redis, namespace: Namespace, state: str | None = None) -> float:
    return sum(value for name, labels, value in telemetry.read(client, namespace)
               if name == "mhogo_tasks_total" and labels["task"] == "mhogo.inference.diagnose"
               and state in (None, labels["state"]))  # fmt: skip


def set_aside(client: redis.Redis, refused: str, job_ids: list[str]) -> set[str]:
    raw: list[bytes] = client.lrange(refused, 0, -1)  # type: ignore[assignment]
    records = [record.decode() for record in raw]
    return {job_id for job_id in job_ids if any(job_id in record for record in records)}


def refuses_to_start(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_worker_or_api_on_a_database_of_another_deployment_does_not_start(tmp_path: Path, redis_url: str) -> None:
    """MHOGO_DEPLOYMENT names deployment A, the database is B's: the worker (through `mhogo worker` and through
    Celery's own command, which only the worker's start-up hook guards) and the API refuse, saying what to do."""
    ours, theirs = tmp_path / "a.db", tmp_path / "b.db"
    ids = []
    for path in (ours, theirs):
        with Session(open_database(f"sqlite:///{path}")) as session:
            ids.append(deployment_id(session))
    env = dict(os.environ) | {"MHOGO_HOME": str(tmp_path), "MHOGO_DATABASE_URL": f"sqlite:///{theirs}",
                              "MHOGO_REDIS_URL": redis_url, "MHOGO_DEPLOYMENT": ids[0]}  # fmt: skip
    expected = f"this process is set up for deployment {ids[0]} (MHOGO_DEPLOYMENT), but its database belongs to " \
               f"deployment {ids[1]}"  # fmt: skip
    mhogo = [sys.executable, "-m", "mhogo"]
    assert expected in refuses_to_start([*mhogo, "worker", "inference"], env)
    assert expected in refuses_to_start([*mhogo, "api"], env)
    celery = [sys.executable, "-m", "celery", "--app=workers.app", "worker", "--queues=inference", "--concurrency=1"]
    said = refuses_to_start(celery, env)
    assert expected in said
    assert "ready" not in said  # it never took a task

"""`mhogo up`: the supervisor, its Redis fallback, and the whole main command end to end."""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from core import schema
from core.config import Settings, settings
from core.db import make_engine
from core.devices import device_for_token
from core.namespace import Namespace, deployment_id
from mhogo.stack import Service, Stack, redis_answers
from schemas.tables import Job
from tests.core.test_schema import CLASSIFIED, PREVIOUS_RELEASE, PREVIOUS_TOKEN
from tests.utils.processes import free_port


def test_starts_an_embedded_redis_when_none_answers(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    stack = Stack(Settings(HOME=tmp_path, REDIS_URL=dead), services=(), out=io.StringIO())
    try:
        url = stack.resolve_redis(explicit_url=False)
        assert url != dead
        assert redis_answers(url)
        assert (tmp_path / "redis").is_dir()
    finally:
        stack.stop()
    assert not redis_answers(url)


def test_without_a_redis_url_it_says_which_redis_database_it_uses_and_the_namespace(tmp_path: Path) -> None:
    """Another stack may use the same Redis: `mhogo up` says which one, which of its databases, and under which
    prefix this deployment's keys are."""
    url = settings.REDIS_URL  # this run's: 127.0.0.1:6379, a database of its own
    out = io.StringIO()
    stack = Stack(Settings(HOME=tmp_path, REDIS_URL=url), services=(), out=out, namespace=Namespace("a1a1a1a1a1a1"))
    assert stack.resolve_redis(explicit_url=False) == url
    database = int(url.rsplit("/", 1)[1])
    assert (f"no MHOGO_REDIS_URL: using the Redis that answers at 127.0.0.1:6379, database {database}, keys under "
            "mhogo:a1a1a1a1a1a1:") in out.getvalue()  # fmt: skip


def test_an_explicit_url_is_used_as_it_is(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    stack = Stack(Settings(HOME=tmp_path, REDIS_URL=dead), services=(), out=io.StringIO())
    assert stack.resolve_redis(explicit_url=True) == dead
    assert stack.processes == {}


def watch_for(stack: Stack, seconds: float, until: Callable[[], bool]) -> int:
    deadline = time.monotonic() + seconds
    return stack.watch(until=lambda: until() or time.monotonic() > deadline)


@pytest.mark.integration
def test_a_service_killed_as_the_oom_killer_would_is_started_again(tmp_path: Path) -> None:
    """A SIGKILL of one service once stopped the whole stack ("flower exited with code -9; stopping everything"),
    taking the API down with it. Now the dead service comes back and the others stay up."""
    port = free_port()
    settings = Settings(HOME=tmp_path, API_PORT=port)
    out = io.StringIO()
    services = (Service("api", ("api",)), Service("flower", ("flower",)))
    stack = Stack(settings, services=services, out=out, restart_base_s=0.2)
    stack.env |= {"MHOGO_HOME": str(tmp_path), "MHOGO_API_PORT": str(port), "MHOGO_FLOWER_PORT": str(free_port())}
    try:
        stack.start(explicit_redis_url=True)
        api = f"http://127.0.0.1:{port}/healthz"
        assert watch_for(stack, 60, lambda: answers(api)) == 0
        flower, api_pid = stack.processes["flower"].pid, stack.processes["api"].pid
        os.killpg(flower, signal.SIGKILL)
        assert watch_for(stack, 30, lambda: stack.processes["flower"].pid != flower) == 0
        assert stack.processes["api"].pid == api_pid  # the API was never stopped
        assert answers(api)
        assert "flower exited with code -9; starting it again in 0.2 s" in out.getvalue()
    finally:
        stack.stop()


def test_a_service_that_keeps_dying_stops_the_stack_saying_so(tmp_path: Path) -> None:
    out = io.StringIO()
    stack = Stack(Settings(HOME=tmp_path), services=(), out=out, restart_base_s=0.05)
    stack.spawn("doomed", [sys.executable, "-c", "raise SystemExit(3)"])
    assert watch_for(stack, 30, lambda: False) == 1
    said = out.getvalue()
    assert said.count("doomed exited with code 3; starting it again") == 4
    assert "doomed exited with code 3, 5 times in 120 s: it does not stay up, stopping everything" in said


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.integration
def test_up_upgrades_the_previous_release_s_database_and_runs_the_demo_on_it(tmp_path: Path) -> None:
    """The main command on a home whose database the release before migrations made: `mhogo up` upgrades it before
    it starts anything, the demo gets a result for every sample, and the old phone's token and jobs still answer."""
    shutil.copy(PREVIOUS_RELEASE, tmp_path / "mhogo.db")
    env = dict(os.environ) | {
        "MHOGO_HOME": str(tmp_path),
        "MHOGO_API_PORT": str(free_port()),
        "MHOGO_FLOWER_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mhogo", "up", "--demo", "--once"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"at revision {schema.head()}" in done.stdout
    with Session(make_engine(f"sqlite:///{tmp_path / 'mhogo.db'}")) as session:
        namespace = Namespace(deployment_id(session))  # made by the upgrade
    assert f"deployment {namespace.deployment}: every key it keeps in Redis is under {namespace.prefix}" in done.stdout
    assert f"(MHOGO_REDIS_URL), keys under {namespace.prefix}" in done.stdout
    summary = re.search(r"demo: (\d+) classified, (\d+) rejected, (\d+) failed, (\d+) unfinished", done.stdout)
    assert summary is not None, done.stdout[-3000:]
    classified, rejected, failed, unfinished = map(int, summary.groups())
    assert (classified + rejected, failed, unfinished) == (60, 0, 0)
    assert "stopping worker-inference" in done.stdout
    assert "Warm shutdown" in done.stdout
    engine = make_engine(f"sqlite:///{tmp_path / 'mhogo.db'}")
    with Session(engine) as session:
        device = device_for_token(session, PREVIOUS_TOKEN)
        job = session.get(Job, CLASSIFIED)
    assert device is not None
    assert device.name == "field phone"
    assert job is not None
    assert (job.status, job.label) == ("classified", "cmd")

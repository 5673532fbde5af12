"""A live stack for integration tests: a real Celery worker process and the API under uvicorn, on the real Redis,
with SQLite and with PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy import Engine
from sqlmodel import Session

from core.config import settings
from core.db import open_database
from core.devices import add_device
from core.namespace import Namespace, bind, resolve
from tests.utils.factories import SAMPLES
from tests.utils.postgres import postgres_database
from tests.utils.processes import ensure_default_redis, free_port, start_mhogo, stop, wait_for


@dataclass
class LiveStack:
    api_url: str
    engine: Engine
    env: dict[str, str]
    home: Path
    worker_name: str
    namespace: Namespace  # its database's deployment: where its queues and keys are in Redis
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        """A Celery app of the stack's own deployment, to ping, inspect and steer its worker (remote control is in
        the namespace too: the test process's app, bound to no stack or to another, would not reach it)."""
        if self._celery is None:
            self._celery = celery_app_for(self.env["MHOGO_REDIS_URL"], self.namespace)
        return self._celery

    def close_celery(self) -> None:
        if self._celery is not None:
            self._celery.close()

    def new_token(self, name: str = "phone") -> str:
        with Session(self.engine) as session:
            return add_device(session, name)[1]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="session")
def redis_url() -> str:
    ensure_default_redis()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    return settings.REDIS_URL


def celery_app_for(redis_url: str, namespace: Namespace) -> Celery:
    app = Celery("mhogo-test", set_as_current=False)
    app.config_from_object("core.celery_config")
    app.conf.broker_url = redis_url
    bind(app, namespace)
    return app


def worker_answers(app: Celery, name: str) -> bool:
    return any(name in reply for reply in app.control.ping(destination=[name], timeout=1.0))


@contextmanager
def live_stack(
    home: Path, database_url: str, redis_url: str, extra_env: dict[str, str] | None = None, concurrency: int = 2
) -> Iterator[LiveStack]:
    port = free_port()
    env = (
        dict(os.environ)
        | {
            "MHOGO_HOME": str(home),
            "MHOGO_DATABASE_URL": database_url,
            "MHOGO_REDIS_URL": redis_url,
            "MHOGO_API_PORT": str(port),
            "MHOGO_LOG_LEVEL": "INFO",
            "MHOGO_TRAIN_DATA_DIR": str(SAMPLES),  # retraining runs train on the repo's sample, two batches a model
            "MHOGO_RETRAIN_DRY_RUN": "true",
            "MHOGO_RATE_LIMIT": "",  # these tests send hundreds of photos from one phone; limits have their own tests
        }
        | (extra_env or {})
    )
    engine = open_database(database_url)
    name = f"it-{uuid.uuid4().hex[:8]}@localhost"
    stack = LiveStack(f"http://127.0.0.1:{port}", engine, env, home, name, resolve(engine, None))
    with ExitStack() as cleanup:
        cleanup.callback(stack.close_celery)
        worker = start_mhogo(["worker", "inference", "events", "retraining", "-c", str(concurrency), "--name", name],
                             env, home / "worker.log")  # fmt: skip
        cleanup.callback(stop, worker)
        api = start_mhogo(["api"], env, home / "api.log")
        cleanup.callback(stop, api)
        stack.processes += [worker, api]
        wait_for(lambda: httpx.get(f"{stack.api_url}/healthz").status_code == 200, 60, "the API")
        if redis_url == settings.REDIS_URL:
            wait_for(lambda: worker_answers(stack.celery, name), 60, "the worker")
        yield stack
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp(f"stack-{request.param}")
    if request.param == "sqlite":
        with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", redis_url) as live:
            yield live
        return
    with postgres_database() as url, live_stack(home, url, redis_url) as live:
        yield live

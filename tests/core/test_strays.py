"""Upgrading a running deployment: messages the release before namespaces queued under the old names (the lists
`inference`, `events`, `retraining`, and kombu's `unacked` hash of a worker that stopped holding one) are moved into
the namespace when they name a job the database knows, dropped when it is done already, and left for another
deployment otherwise (a run or a phone is numbered from 1 in every database: no proof); tasks set aside as refused
are sent again by the deployment whose they are. On a redis-server of the test's own: the old names are at the top
of the Redis database, where another test run could put its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine
from sqlmodel import Session

from core import jobs, strays
from core.namespace import Namespace, bind, deployment_id
from core.publisher import Publisher
from schemas.findings import Finding
from schemas.queues import TaskName
from schemas.tables import RetrainRun, new_id
from tests.utils.factories import make_device, make_job
from tests.utils.processes import RedisServer, free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def celery_app(url: str, namespace: Namespace | None) -> Celery:
    """The Celery app as a release sees it: the one before namespaces (None) or this one, bound."""
    app = Celery(f"strays-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.config_from_object("core.celery_config")
    app.conf.broker_url = url
    if namespace is not None:
        bind(app, namespace)
    return app


def waiting(client: redis.Redis, key: str) -> list[tuple[str | None, list[Any]]]:
    """The task and arguments of each message of the list, the next one to be taken first."""
    raw: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
    return [strays.task_of(item) for item in reversed(raw)]


def test_an_upgrade_takes_its_own_old_messages_into_the_namespace(sqlite_engine: Engine, server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    with Session(sqlite_engine, expire_on_commit=False) as session:
        namespace = Namespace(deployment_id(session))
        device, _ = make_device(session)
        waits, held, done = (
            (job.id, job.blob_key)
            for job in (make_job(session, device, key=str(n), data=str(n).encode()) for n in range(3))
        )
        jobs.finish(session, done[0], Finding(label="cmd"))
        run = RetrainRun(rule="operator", fired_by="ops")
        session.add(run)
        session.commit()
        run_id, device_id = run.id, device.id
    old = celery_app(server.url, None)
    feedback = {"event_id": new_id(), "job_id": waits[0], "label": "cmd", "source": "farmer",
                "created_at": "2026-12-01T10:00:00Z"}  # fmt: skip
    phone: dict[str, Any] = {
        "device_id": device_id,
        "events": [
            {"event_id": "e-000001", "kind": "upload_retried", "at": "2026-12-01T10:00:00Z", "job_id": waits[0]}
        ],
    }
    other_phone: dict[str, Any] = {"device_id": device_id, "events": []}  # device 1 of which deployment?
    stranger = new_id()  # a job of another deployment that shared the Redis database before
    sent = [(TaskName.DIAGNOSE, waits), (TaskName.DIAGNOSE, done), (TaskName.DIAGNOSE, (stranger, "p.jpg")),
            (TaskName.FEEDBACK, (feedback,)), (TaskName.SWEEP, ()), (TaskName.CLIENT_EVENTS, (phone,)),
            (TaskName.CLIENT_EVENTS, (other_phone,)), (TaskName.RETRAIN, (run_id,)),
            (TaskName.DIAGNOSE, held)]  # fmt: skip
    for name, args in sent:
        old.send_task(name.value, args=args)
    # The last photo was taken by a worker of the release before, which was stopped before it acknowledged it: kombu
    # keeps it in `unacked` (message, exchange, routing key), delivered an hour ago.
    taken = client.lpop("inference")
    client.hset("unacked", "tag-1", json.dumps([json.loads(taken), "", "inference"]))  # type: ignore[arg-type]
    client.zadd("unacked_index", {"tag-1": time.time() - 3600})

    with Session(sqlite_engine) as session:
        counts = strays.take_back(session, client, namespace, Publisher(celery_app(server.url, namespace)), 600)

    assert counts == {"strays_resent": 0, "strays_moved": 4, "strays_dropped": 1}
    assert waiting(client, namespace.queue("inference")) == [(TaskName.DIAGNOSE, list(held)),
                                                             (TaskName.DIAGNOSE, list(waits))]  # fmt: skip
    assert waiting(client, namespace.queue("events")) == [(TaskName.FEEDBACK, [feedback]),
                                                          (TaskName.CLIENT_EVENTS, [phone])]  # fmt: skip
    assert waiting(client, "inference") == [(TaskName.DIAGNOSE, [stranger, "p.jpg"])]  # left for its own
    # Whose are these? Left; an open run whose message is left behind is sent again by the sweeper.
    assert waiting(client, "events") == [(TaskName.SWEEP, []), (TaskName.CLIENT_EVENTS, [other_phone])]
    assert waiting(client, "retraining") == [(TaskName.RETRAIN, [run_id])]
    assert client.llen(namespace.queue("retraining")) == 0
    assert client.hlen("unacked") == 0
    # They are messages as this release's workers take them: from the namespace, task id and arguments kept.
    new = celery_app(server.url, namespace)
    with new.connection_for_read() as connection:
        queue = connection.SimpleQueue("inference")
        message = queue.get(timeout=5)
        assert (message.headers["task"], message.payload[0]) == (TaskName.DIAGNOSE, list(held))
        message.ack()
        queue.close()


def test_a_task_set_aside_is_sent_again_by_the_deployment_whose_it_is(
    sqlite_engine: Engine, tmp_path: Path, server: RedisServer
) -> None:
    """Two databases with one deployment id (a copy restored beside the original) share a namespace: each sweep
    sends again the set-aside tasks its own database knows, as new messages, and leaves the other's."""
    client = redis.Redis.from_url(server.url)
    with Session(sqlite_engine, expire_on_commit=False) as session:
        namespace = Namespace(deployment_id(session))
        job = make_job(session, make_device(session)[0])
    records = [{"task": TaskName.DIAGNOSE.value, "task_id": "t-1", "args": [job.id, job.blob_key]},
               {"task": TaskName.DIAGNOSE.value, "task_id": "t-2", "args": [new_id(), "photos/x.jpg"]}]  # fmt: skip
    client.lpush(namespace.refused, *[json.dumps(record) for record in records])
    with Session(sqlite_engine) as session:
        counts = strays.take_back(session, client, namespace, Publisher(celery_app(server.url, namespace)), 600)
    assert counts == {"strays_resent": 1, "strays_moved": 0, "strays_dropped": 0}
    [sent] = client.lrange(namespace.queue("inference"), 0, -1)
    message = json.loads(sent)
    assert strays.task_of(sent) == (TaskName.DIAGNOSE, [job.id, job.blob_key])
    assert message["headers"]["id"] != "t-1"  # a new message: its deliveries are counted afresh
    assert [json.loads(raw)["task_id"] for raw in client.lrange(namespace.refused, 0, -1)] == ["t-2"]

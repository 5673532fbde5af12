"""A deployment's namespace: made once per database, checked against MHOGO_DEPLOYMENT, bound to a Celery app once,
and the prefix of every key kombu and Flower use (a queue sent to here is the one Flower counts)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from celery import Celery
from flower.utils.broker import Broker
from sqlalchemy import Engine
from sqlmodel import Session

from core import schema
from core.config import settings
from core.namespace import Namespace, bind, bound, deployment_id, namespace_of, resolve
from core.publisher import Publisher
from schemas.errors import DeploymentMismatch
from schemas.queues import TaskName
from tests.utils.processes import ensure_default_redis


def app_in(namespace: Namespace | None) -> Celery:
    app = Celery(f"ns-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.config_from_object("core.celery_config")
    app.conf.broker_url = settings.REDIS_URL
    if namespace is not None:
        bind(app, namespace)
    return app


def test_every_database_is_a_deployment_of_its_own_made_once(engine: Engine) -> None:
    with Session(engine) as session:
        made = deployment_id(session)
    assert len(made) == 12
    schema.upgrade(engine)  # opening, upgrading again: the same deployment
    assert resolve(engine, None) == resolve(engine, made) == Namespace(made)
    with pytest.raises(DeploymentMismatch, match=f"its database belongs to deployment {made}"):
        resolve(engine, "a1a1a1a1a1a1")


def test_an_app_is_bound_once_and_an_unbound_one_sends_nothing() -> None:
    ours = Namespace("a1a1a1a1a1a1")
    app = app_in(None)
    with pytest.raises(DeploymentMismatch, match="bound to no deployment"):
        Publisher(app)
    bind(app, ours)
    bind(app, ours)  # again, the same: nothing changes
    assert (bound(app), namespace_of(app)) == (ours, ours)
    assert app.conf.broker_transport_options["global_keyprefix"] == "mhogo:a1a1a1a1a1a1:"
    assert app.conf.broker_transport_options["visibility_timeout"] == settings.VISIBILITY_TIMEOUT_S  # kept
    with pytest.raises(DeploymentMismatch, match="works for deployment a1a1a1a1a1a1 already"):
        bind(app, Namespace("b2b2b2b2b2b2"))


def test_a_task_sent_in_a_namespace_is_in_its_queue_and_flower_counts_it_there() -> None:
    """kombu's Redis transport puts the message in `mhogo:<id>:inference`, where mhogo's own figures (LLEN) and
    Flower (through the app's transport options) look; another deployment's Flower counts none of it."""
    ensure_default_redis()
    ours, theirs = Namespace(uuid.uuid4().hex[:12]), Namespace(uuid.uuid4().hex[:12])
    app = app_in(ours)
    Publisher(app).publish_photo("job-1", "photos/aa/bb.jpg")
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert client.llen(ours.queue("inference")) == 1
        assert client.llen(theirs.queue("inference")) == 0

        async def flower_counts(namespace: Namespace) -> int:
            broker = Broker(settings.REDIS_URL, broker_options=app_in(namespace).conf.broker_transport_options)
            [queue] = await broker.queues(["inference"])
            return int(queue["messages"])

        assert [asyncio.run(flower_counts(ns)) for ns in (ours, theirs)] == [1, 0]
        with app.connection_for_read() as connection:
            queue = connection.SimpleQueue("inference")
            message = queue.get(timeout=5)
            assert (message.headers["task"], message.payload[0]) == (TaskName.DIAGNOSE, ["job-1", "photos/aa/bb.jpg"])
            message.ack()
            queue.close()
    finally:
        client.delete(ours.queue("inference"))
        client.close()
        app.close()

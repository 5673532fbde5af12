"""A deployment's namespace in Redis. Every key a deployment keeps there starts with `mhogo:<deployment id>:`, the id
its database was given once (schemas.tables.Deployment), so two deployments on one Redis database (another
MHOGO_HOME, a staging stack, a test run) share nothing: neither takes the other's tasks, adds to its counters, holds
its locks or spends its phones' rate limits (device ids start at 1 in every database). Every machine of one
deployment is in the same namespace by sharing its database. The keys, under the prefix:

    inference, events, retraining          the queues: kombu's lists, named through its `global_keyprefix`
    unacked, unacked_index, unacked_mutex  messages taken and not yet acknowledged (kombu)
    _kombu.binding.*, /<db>.celeryev...    kombu's bindings, and the channels of task events and remote control
    metrics:counters                       the fleet's task counters (core.telemetry)
    deliveries:<task id>                   how often each message was delivered (core.deliveries)
    retrain:fire, aggregate:lock, sweep:lock   locks (core.triggers, workers.events)
    limits:...                             per-device rate limits (the `limits` library's keys)
    refused                                the last tasks refused for a job or run the database does not know

A process binds its Celery app to the namespace once, before the app's first connection (`bind`)."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.errors import DatabaseNotReady, DeploymentMismatch
from schemas.tables import Deployment

ROOT = "mhogo"
BOUND = "mhogo_deployment"  # the app setting that records its binding; pool processes forked later inherit it


@dataclass(frozen=True)
class Namespace:
    deployment: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{self.deployment}:"

    def key(self, name: str) -> str:
        return self.prefix + name

    def queue(self, name: str) -> str:
        """The Redis list kombu keeps the queue in (messages of priority 0, the only one mhogo sends)."""
        return self.prefix + name

    @property
    def unacked(self) -> str:
        return self.key("unacked")  # kombu's hash of the messages workers hold

    @property
    def counters(self) -> str:
        return self.key("metrics:counters")

    @property
    def deliveries(self) -> str:
        return self.key("deliveries")

    @property
    def fire_lock(self) -> str:
        return self.key("retrain:fire")

    @property
    def aggregate_lock(self) -> str:
        return self.key("aggregate:lock")

    @property
    def sweep_lock(self) -> str:
        return self.key("sweep:lock")

    @property
    def retention_lock(self) -> str:
        return self.key("retention:lock")

    @property
    def rate_limits(self) -> str:
        return self.key("limits")

    @property
    def refused(self) -> str:
        return self.key("refused")


def deployment_id(session: Session) -> str:
    """The id of the deployment the session's database belongs to."""
    ids = session.exec(select(Deployment.id)).all()
    if len(ids) != 1:
        raise DatabaseNotReady(f"the database holds {len(ids)} deployment ids instead of one: restore a backup")
    return ids[0]


def resolve(engine: Engine, configured: str | None) -> Namespace:
    """The namespace of a process on this database: the database's deployment, which MHOGO_DEPLOYMENT (when set)
    must name, else the process would work in another deployment's namespace."""
    with Session(engine) as session:
        found = deployment_id(session)
    if configured and configured != found:
        raise DeploymentMismatch(
            f"this process is set up for deployment {configured} (MHOGO_DEPLOYMENT), but its database belongs to "
            f"deployment {found}: it would take deployment {configured}'s tasks without knowing their jobs. Point "
            f"MHOGO_DATABASE_URL (or MHOGO_HOME) at deployment {configured}'s database, or unset MHOGO_DEPLOYMENT to "
            f"join deployment {found}."
        )
    return Namespace(found)


def bind(app: Celery, namespace: Namespace) -> None:
    """Put the app's broker keys under the namespace: kombu's Redis transport prefixes every key and channel it
    uses with `global_keyprefix` (queues, unacknowledged messages, bindings, events, remote control), and Flower
    reads the queues' lengths with it. Once per process: binding again to another deployment is refused, since
    connections made before would stay in the first one."""
    bound = namespace_of(app)
    if bound == namespace:
        return
    if bound is not None:
        raise DeploymentMismatch(f"this process works for deployment {bound.deployment} already, not "
                                 f"{namespace.deployment}")  # fmt: skip
    options = dict(app.conf.broker_transport_options or {}) | {"global_keyprefix": namespace.prefix}
    app.conf.update({BOUND: namespace.deployment, "broker_transport_options": options})


def namespace_of(app: Celery) -> Namespace | None:
    """The namespace the app was bound to, or None."""
    deployment = app.conf.get(BOUND)
    return Namespace(str(deployment)) if deployment else None


def bound(app: Celery) -> Namespace:
    """The app's namespace; an app bound to none would send to queues no worker of any deployment reads."""
    namespace = namespace_of(app)
    if namespace is None:
        raise DeploymentMismatch("the Celery app is bound to no deployment: bind it (core.namespace.bind) before "
                                 "it sends or takes a task")  # fmt: skip
    return namespace

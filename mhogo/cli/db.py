"""`mhogo db`: the database's schema: which revision it is at, and upgrading it in place to this release's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from core.config import settings
from core.redact import redact, secrets_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.namespace import Namespace


@click.group()
def db() -> None:
    """The database's schema: its revision, and upgrading it (core/migrations)."""


def where() -> str:
    return redact(settings.database_url, secrets_of(settings))


@db.command("current")
def db_current() -> None:
    """The database's revision and this release's; exit 1 when they differ (the services would refuse to start)."""
    from sqlmodel import Session

    from core import schema
    from core.db import get_engine
    from core.namespace import Namespace, deployment_id

    engine = get_engine(settings.database_url)
    state = schema.state(engine)
    revision = state.revision or ("nothing yet" if state.empty else "no revision (before migrations)")
    click.echo(f"{where()}: at {revision}, this mhogo at {state.head}")
    if "deployment" in state.tables:
        with Session(engine) as session:
            deployment = deployment_id(session)
        click.echo(f"deployment {deployment}: its keys in Redis are under {Namespace(deployment).prefix}")
    reason = schema.refusal(state)
    if reason is not None and not state.empty:
        raise click.ClickException(reason)


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to this release's revision, in place (a database of the release before migrations too)."""
    click.echo(f"{where()}: at {upgrade_database()}")


def upgrade_database() -> str:
    """Upgrade (`mhogo up` does it first); a database that cannot be upgraded is a message and exit code 1."""
    from core import schema
    from core.db import get_engine
    from schemas.errors import DatabaseNotReady

    try:
        return schema.upgrade(get_engine(settings.database_url)).head
    except DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from exc


def require_database() -> Engine:
    """Before a service starts: the schema must be this release's (an empty database is created), else exit 1."""
    from core.db import open_database
    from schemas.errors import DatabaseNotReady

    try:
        return open_database(settings.database_url)
    except DatabaseNotReady as exc:
        raise click.ClickException(f"{where()}: {exc}") from exc


def require_deployment() -> Namespace:
    """Before a service starts, or a command sends a task or reads Redis: the database as `require_database`, of the
    deployment MHOGO_DEPLOYMENT names when it is set (else exit 1, saying so); the one Celery app bound to its
    namespace. Returns the namespace."""
    from core.celery_app import app
    from core.namespace import bind, resolve
    from schemas.errors import DatabaseNotReady, DeploymentMismatch

    engine = require_database()
    try:
        namespace = resolve(engine, settings.DEPLOYMENT)
        bind(app, namespace)
    except (DeploymentMismatch, DatabaseNotReady) as exc:
        raise click.ClickException(f"{where()}: {exc}") from exc
    return namespace


COMMANDS = (db,)

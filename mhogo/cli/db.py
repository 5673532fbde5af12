"""`mhogo db`: the database's schema: which revision it is at, and upgrading it in place to this release's."""

from __future__ import annotations

import click

from core.config import settings
from core.redact import redact, secrets_of


@click.group()
def db() -> None:
    """The database's schema: its revision, and upgrading it (core/migrations)."""


def where() -> str:
    return redact(settings.database_url, secrets_of(settings))


@db.command("current")
def db_current() -> None:
    """The database's revision and this release's; exit 1 when they differ (the services would refuse to start)."""
    from core import schema
    from core.db import get_engine

    state = schema.state(get_engine(settings.database_url))
    revision = state.revision or ("nothing yet" if state.empty else "no revision (before migrations)")
    click.echo(f"{where()}: at {revision}, this mhogo at {state.head}")
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


def require_database() -> None:
    """Before a service starts: the schema must be this release's (an empty database is created), else exit 1."""
    from core.db import open_database
    from schemas.errors import DatabaseNotReady

    try:
        open_database(settings.database_url)
    except DatabaseNotReady as exc:
        raise click.ClickException(f"{where()}: {exc}") from exc


COMMANDS = (db,)

"""The database's schema and its versions: Alembic migrations (core/migrations/versions/) bring a database made by any
release of mhogo since 2026-12-02 to the tables of schemas/tables.py, on SQLite and PostgreSQL alike.

- A database with none of mhogo's tables is created by whoever opens it first: there is nothing in it to lose.
- A database at an older revision, or made by the release before migrations (its tables, no revision), is upgraded
  only on purpose: `mhogo db upgrade`, or `mhogo up` before it starts anything. Until then every service refuses to
  start and says why, instead of answering every upload with a 503.
- A database at a revision this code does not know was made by a newer mhogo: refused everywhere.

An upgrade holds a lock (PostgreSQL: an advisory lock; SQLite: a file beside the database), so processes that start
together never run a migration twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from schemas.errors import DatabaseNotReady

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the tables as the release of 2026-12-02 made them, before there were migrations
ADVISORY_LOCK = 0x6D686F676F  # "mhogo": one upgrade at a time per PostgreSQL database
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # the database's revision; None when it has none (empty, or made before migrations)
    head: str  # the revision this code's tables are at
    tables: frozenset[str]  # mhogo's tables the database holds

    @property
    def ready(self) -> bool:
        return self.revision == self.head

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.tables


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, without an ini file: the migrations folder, and the connection to run them on."""
    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        alembic.attributes["connection"] = connection
    return alembic


def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "no migrations in core/migrations/versions"
    return revision


def known(revision: str) -> bool:
    return revision in {script.revision for script in ScriptDirectory.from_config(config()).walk_revisions()}


def _state(connection: Connection) -> SchemaState:
    from sqlmodel import SQLModel

    import schemas.tables  # noqa: F401  (registers the tables)

    names = set(inspect(connection).get_table_names())
    revision = MigrationContext.configure(connection).get_current_revision()
    return SchemaState(revision, head(), frozenset(names & set(SQLModel.metadata.tables)))


def state(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        return _state(connection)


def refusal(current: SchemaState) -> str | None:
    """Why a service must not start on this database, or None when it may."""
    if current.ready:
        return None
    if current.revision is not None and not known(current.revision):
        return (f"the database is at revision {current.revision}, which this mhogo (at {current.head}) does not know: "
                "it was made by a newer release. Run that release, or restore a backup made for this one.")  # fmt: skip
    was = current.revision or "the release before migrations"
    return (f"the database is at {was}, this mhogo needs revision {current.head}: run `mhogo db upgrade` "
            "(`mhogo up` does it before it starts anything)")  # fmt: skip


def ensure(engine: Engine) -> SchemaState:
    """The schema as the code needs it: created when the database holds none of mhogo's tables, else checked.
    Raises DatabaseNotReady with what to do when the database is behind or ahead of the code."""
    current = state(engine)
    if current.empty:
        current = upgrade(engine)
    elif not current.ready:
        current = settled(engine)
    reason = refusal(current)
    if reason is not None:
        raise DatabaseNotReady(reason)
    return current


def settled(engine: Engine) -> SchemaState:
    """The state once no upgrade is under way: another process may be making the tables of an empty database right
    now (on SQLite its tables appear before its revision), which must not be taken for a database to upgrade."""
    with _exclusive(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        return _state(connection)


def upgrade(engine: Engine) -> SchemaState:
    """Bring the database to this code's revision: run the migrations it lacks. A database made before migrations
    is first marked as the baseline, once its tables are checked to be the baseline's. Returns the state after."""
    with _exclusive(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        before = _state(connection)  # again, under the lock: another process may have upgraded meanwhile
        if before.revision is not None and not known(before.revision):
            raise DatabaseNotReady(refusal(before) or "")
        if before.revision is None and before.tables:
            _adopt(connection, before)
        if not before.ready:
            command.upgrade(config(connection), "head")
        after = _state(connection)
    if before.revision != after.revision:
        log.warning("database upgraded from %s to %s", before.revision or "no revision", after.revision)
    return after


def _adopt(connection: Connection, found: SchemaState) -> None:
    """A database of the release before migrations: its tables must be the baseline's, column for column (an older
    database may lack columns that create_all never added), then it is marked as at the baseline."""
    missing = _baseline_columns() - _columns(connection)
    if missing:
        shown = ", ".join(sorted(f"{table}.{column}" for table, column in missing)[:10])
        raise DatabaseNotReady(f"the database's tables are not those of any release mhogo can upgrade (missing "
                               f"{shown}): restore a backup, or start from an empty database")  # fmt: skip
    command.stamp(config(connection), BASELINE)
    log.warning("database made before migrations: marked as at revision %s", BASELINE)


def _columns(connection: Connection) -> set[tuple[str, str]]:
    inspector = inspect(connection)
    return {(table, column["name"]) for table in inspector.get_table_names() if table != VERSION_TABLE
            for column in inspector.get_columns(table)}  # fmt: skip


def _baseline_columns() -> set[tuple[str, str]]:
    """Every (table, column) the baseline migration makes, as it makes them in a database of its own."""
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        command.upgrade(config(connection), BASELINE)
        return _columns(connection)


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """On a SQLite file, a lock file beside it (PostgreSQL locks inside the transaction instead)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with FileLock(f"{database}.upgrade.lock"):
        yield

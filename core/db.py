"""Database engine and sessions for SQLite (default, under MHOGO_HOME) and PostgreSQL (production)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Plain `postgresql://` URLs would pick psycopg2; mhogo ships psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes writers wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a 202 promises the job survives a power cut
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_recycle=1800)


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine (and connection pool) per URL per process."""
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def dispose_engines() -> None:
    """In a forked child: drop the pooled connections inherited from the parent without closing them under it."""
    for engine in _ENGINES.values():
        engine.dispose(close=False)


def init_db(engine: Engine) -> None:
    """The tables as this code needs them: created in an empty database, else checked (core.schema). Raises
    DatabaseNotReady, saying what to do, on a database behind or ahead of the code."""
    from core import schema

    schema.ensure(engine)


_READY: set[str] = set()


def open_database(url: str) -> Engine:
    """The process's engine for `url`, its tables in place (`init_db`): what every entry point (a command, a worker,
    a benchmark) calls before its first query. The schema is looked at once per URL per process."""
    engine = get_engine(url)
    if url not in _READY:
        init_db(engine)
        _READY.add(url)
    return engine


def open_session(url: str) -> Session:
    """A session on `open_database(url)` whose objects stay readable after a commit, as a command uses them."""
    return Session(open_database(url), expire_on_commit=False)


def local_folder(engine: Engine) -> Path | None:
    """The folder of a SQLite database's file, whose free space is the database's; None for a database server."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve().parent


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


DISK_FULL_SQLSTATE = "53100"  # PostgreSQL's disk_full


def disk_full(exc: BaseException) -> bool:
    """The database could not write for want of space: SQLite's SQLITE_FULL ("database or disk is full"), or
    PostgreSQL's disk_full ("could not extend file ... No space left on device")."""
    if not isinstance(exc, DBAPIError):
        return False
    cause = exc.orig
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(cause, "sqlstate", None) == DISK_FULL_SQLSTATE


def close_session(session: Session) -> None:
    try:
        session.close()
    except OperationalError as exc:  # the database went away after the answer was decided: nothing to undo
        log.warning("closing a session on a lost database connection: %s", exc)

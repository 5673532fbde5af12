"""A throwaway PostgreSQL database per test, on the server of this machine (or MHOGO_TEST_POSTGRES_URL).

When none answers, the tests that need one are skipped with the reason, so a laptop without PostgreSQL still runs
the rest; with MHOGO_REQUIRE_POSTGRES=1 (CI sets it, in .ci/run) they fail instead: a run that quietly skipped every
PostgreSQL test must not pass as a green build."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

ADMIN_URL = os.environ.get("MHOGO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("MHOGO_REQUIRE_POSTGRES", "") not in ("", "0")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"no PostgreSQL answers at {ADMIN_URL}: {exc}".strip()
    if REQUIRED:  # outside the `except`: the reason says it all, psycopg's traceback adds nothing
        pytest.fail(f"{reason}\nMHOGO_REQUIRE_POSTGRES=1: this run must test on PostgreSQL, not skip it "
                    "(start PostgreSQL, or point MHOGO_TEST_POSTGRES_URL at one)", pytrace=False)  # fmt: skip
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"mhogo_test_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

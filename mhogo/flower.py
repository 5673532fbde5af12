"""Flower as mhogo runs it (`python -m mhogo.flower --app=workers.app flower ...`, what `mhogo flower` starts): its
/metrics and /healthcheck pages, which Flower serves to anyone, behind the same login as every other page. Flower
itself is started read-only (`--read_only`), so no task can be run, revoked or a worker shut down through it."""

from __future__ import annotations

import sys
from typing import Any

from flower import urls
from flower.views import monitor
from tornado import web


class Metrics(monitor.Metrics):  # type: ignore[misc]  # flower ships no types
    @web.authenticated
    async def get(self) -> None:
        await super().get()


class Healthcheck(monitor.Healthcheck):  # type: ignore[misc]
    @web.authenticated
    async def get(self) -> None:
        await super().get()


LOCKED = {monitor.Metrics: Metrics, monitor.Healthcheck: Healthcheck}


def lock_down(handlers: list[Any]) -> None:
    """Swap the open pages' handlers for ones that ask for the login (the list Flower builds its app from)."""
    for index, entry in enumerate(handlers):
        if isinstance(entry, tuple) and len(entry) >= 2 and entry[1] in LOCKED:  # (pattern, handler[, kwargs])
            handlers[index] = (entry[0], LOCKED[entry[1]], *entry[2:])


if __name__ == "__main__":
    from celery.bin.celery import main

    lock_down(urls.handlers)
    sys.exit(main())

"""Every task of every worker process counts itself: started, succeeded, failed, retried, and its run time, into
the shared counters (core.telemetry) that `/metrics` exports."""

from __future__ import annotations

import socket
import time
from typing import Any

import redis
from celery import Task
from celery.signals import task_failure, task_postrun, task_prerun, task_retry

from core import telemetry
from core.config import settings
from core.namespace import namespace_of

HOST = socket.gethostname()
_started: dict[str, float] = {}
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def _add(task: Task | None, increments: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    """Into the counters of the deployment the worker serves (its app is bound as it starts); a task applied in a
    process bound to none has no fleet to count in."""
    namespace = namespace_of(task.app) if task is not None else None
    if namespace is not None:
        telemetry.add(_redis(), namespace, increments)


def _labels(task: Task | None, **extra: str) -> frozenset[tuple[str, str]]:
    name = getattr(task, "name", None) or "unknown"
    return frozenset({"task": name, "host": HOST, **extra}.items())


@task_prerun.connect
def _on_prerun(task_id: str, task: Task, **_: Any) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _on_postrun(task_id: str, task: Task, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    increments = {("mhogo_tasks_total", _labels(task, state=(state or "unknown").lower())): 1.0}
    if started is not None:
        labels = _labels(task)
        increments[("mhogo_task_seconds_sum", labels)] = time.perf_counter() - started
        increments[("mhogo_task_seconds_count", labels)] = 1.0
    _add(task, increments)


@task_failure.connect
def _on_failure(sender: Task | None = None, exception: BaseException | None = None, **_: Any) -> None:
    error = type(exception).__name__ if exception else "unknown"
    _add(sender, {("mhogo_task_failures_total", _labels(sender, error=error)): 1.0})


@task_retry.connect
def _on_retry(sender: Task | None = None, **_: Any) -> None:
    _add(sender, {("mhogo_task_retries_total", _labels(sender)): 1.0})

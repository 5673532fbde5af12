"""The worker side of the one Celery app (`core.celery_app`): the task modules, the consumer that batches task
events, and the hooks every worker process needs (logging with the job id, fresh database connections after a
fork). `mhogo worker`, `mhogo beat` and Flower run this module's `app`."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init

from core.celery_app import app
from core.config import settings
from core.logs import TaskTokens, bind_task, configure_logging, unbind_task
from workers.base import PhotoTask, _job_id

__all__ = ["app"]  # the task modules decorate their tasks with it

app.conf.update(
    include=["workers.inference", "workers.events", "workers.retraining", "workers.telemetry"],
    worker_consumer="workers.consumer:Consumer",  # sends task events a tenth of a second's worth at a time
)

# The context each running task set, by task id, to put back when it ends (a list: a task run eagerly inside
# another, as tests do, nests them).
_bound: dict[str, list[TaskTokens]] = {}


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Celery installs no handler of its own when this signal has a receiver: its lines (`Task ... succeeded`) go
    through our root handler, as JSON, in the worker, its pool processes and beat alike."""
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON)


@task_prerun.connect
def _bind_task(task_id: str, task: Task, args: tuple[Any, ...] | None = None, **_: Any) -> None:
    """Every line a task logs, Celery's own included, carries the job id found in its first argument."""
    _bound.setdefault(task_id, []).append(bind_task(task_job_id(task, tuple(args or ())), task.name, task_id))


def task_job_id(task: Task, args: tuple[Any, ...]) -> str | None:
    """A photo stage names its job first; any other task only inside a payload (a feedback event), since a bare
    string may be something else (a retraining's reason)."""
    if isinstance(task, PhotoTask) or (args and isinstance(args[0], dict)):
        return _job_id(args)
    return None


@task_postrun.connect
def _unbind_task(task_id: str, **_: Any) -> None:
    stack = _bound.get(task_id)
    if not stack:
        return
    unbind_task(stack.pop())
    if not stack:
        del _bound[task_id]


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """A prefork child must not share the parent's database connections."""
    from core.db import dispose_engines

    dispose_engines()

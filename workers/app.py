"""The worker side of the one Celery app (`core.celery_app`): the task modules, the consumer that batches task
events, and the hooks every worker process needs (the deployment's namespace before the first connection, logging
with the job id, fresh database connections after a fork). `mhogo worker`, `mhogo beat` and Flower run this
module's `app`."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import beat_init, celeryd_init, setup_logging, task_postrun, task_prerun, worker_process_init

from core.celery_app import app
from core.config import settings
from core.logs import TaskTokens, bind_task, configure_logging, unbind_task
from core.namespace import bind, namespace_of, resolve
from schemas.errors import MhogoError
from workers.base import PhotoTask, _job_id

__all__ = ["app"]  # the task modules decorate their tasks with it

app.conf.update(
    include=["workers.inference", "workers.events", "workers.retraining", "workers.telemetry"],
    worker_consumer="workers.consumer:Consumer",  # sends task events a tenth of a second's worth at a time
)

# The context each running task set, by task id, to put back when it ends (a list: a task run eagerly inside
# another, as tests do, nests them).
_bound: dict[str, list[TaskTokens]] = {}


@celeryd_init.connect
@beat_init.connect
def _bind_namespace(**_: Any) -> None:
    """Before a worker (or beat) makes its first connection, its app is in the database's namespace: only its own
    deployment's queues. `mhogo worker` and `mhogo beat` bound it already, and said why when they could not; this
    covers `celery --app=workers.app worker` run by hand. An app bound to another deployment than the database's
    (MHOGO_DEPLOYMENT) does not start: SystemExit, since Celery logs any other error of a signal handler and goes
    on."""
    from core.db import open_database

    bound = namespace_of(app)
    configured = bound.deployment if bound is not None else settings.DEPLOYMENT
    try:
        bind(app, resolve(open_database(settings.database_url), configured))
    except MhogoError as exc:  # another deployment's database, or one this release cannot use
        raise SystemExit(f"not starting: {exc}") from exc


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

"""The one Celery app. Producers import it to send tasks by name; workers run it with the task modules."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

app = Celery("mhogo", include=["workers.photos", "workers.inference", "workers.events", "workers.retraining"])
app.config_from_object("workers.config")


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """A prefork child must not share the parent's database connections."""
    from core.db import dispose_engines

    dispose_engines()

"""The one Celery app, configured from `core.celery_config`. Producers and the CLI send tasks through it by name
(`core.publisher`); `workers.app` adds the task modules and the worker's own hooks to this same app."""

from __future__ import annotations

from celery import Celery

app = Celery("mhogo")
app.config_from_object("core.celery_config")

"""The one Celery app, configured from `core.celery_config`. Producers and the CLI send tasks through it by name
(`core.publisher`); `workers.app` adds the task modules and the worker's own hooks to this same app.

Before its first connection, every process binds the app to its deployment's namespace (`core.namespace.bind`):
kombu's Redis transport then keeps every queue, the unacknowledged messages, the task events and remote control
under the namespace's prefix, and Flower reads the queues' lengths with the same prefix."""

from __future__ import annotations

from celery import Celery

from core.config import settings
from core.namespace import Namespace, bind

app = Celery("mhogo")
app.config_from_object("core.celery_config")

if settings.DEPLOYMENT:  # `mhogo up` and `mhogo flower` name it for the processes they start (Flower's included)
    bind(app, Namespace(settings.DEPLOYMENT))

"""The worker's consumer: Celery's own, with the task events it buffers sent a few per Redis write."""

from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer

# Task events (received, started, succeeded, ...) wait at most this long before they go out, together.
EVENT_FLUSH_S = 0.1


class Consumer(CeleryConsumer):  # type: ignore[misc]  # celery ships no types
    """In the prefork pool the worker's parent process sends three task events per task, and Celery flushes its
    event buffer at the next turn of the event loop: one Redis PUBLISH per event, each through a new redis client
    (kombu). That was 44 % of the inference worker's parent's CPU (py-spy during bench/e2e.py). Flushed at most
    every EVENT_FLUSH_S, the events of a tenth of a second go out as one message, as Celery's own buffer limit
    (24 events) already does under heavy load; Flower shows a task up to that much later."""

    _event_flush_due = False

    def on_send_event_buffered(self) -> None:
        if self.hub is None:
            super().on_send_event_buffered()
            return
        if not self._event_flush_due:
            self._event_flush_due = True
            self.hub.call_later(EVENT_FLUSH_S, self._flush_due_events)

    def _flush_due_events(self) -> None:
        self._event_flush_due = False
        self._flush_events()

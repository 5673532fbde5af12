"""Small fakes for collaborators passed through constructors."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any

import pytest
from celery import Celery

from core.namespace import Namespace, bind
from core.publisher import Publisher
from schemas.errors import BrokerUnavailable
from schemas.tasks import ClientEvents, FeedbackEvent


class RecordingPublisher(Publisher):
    """Records what would be sent; `down = True` behaves like a broker that does not answer."""

    def __init__(self) -> None:
        app = Celery("fake", set_as_current=False)
        bind(app, Namespace("recording"))
        super().__init__(app)
        self.down = False
        self.photos: list[tuple[str, str]] = []
        self.feedback: list[FeedbackEvent] = []
        self.client_events: list[ClientEvents] = []
        self.retrains: list[int] = []
        self.tasks: list[tuple[str, list[object]]] = []

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailable("broker unavailable: connection refused")

    def publish_photo(self, job_id: str, blob_key: str) -> None:
        self._check()
        self.photos.append((job_id, blob_key))

    def publish_photos(self, photos: Sequence[tuple[str, str]]) -> bool:
        if self.down:
            return False
        self.photos.extend(photos)
        return True

    def publish_feedback(self, event: FeedbackEvent) -> None:
        self._check()
        self.feedback.append(event)

    def publish_client_events(self, events: ClientEvents) -> None:
        self._check()
        self.client_events.append(events)

    def publish_retrain(self, run_id: int) -> str:
        self._check()
        self.retrains.append(run_id)
        return f"task-{len(self.retrains)}"

    def publish_task(self, task: str, args: Sequence[object]) -> None:
        self._check()
        self.tasks.append((task, list(args)))

    def ping(self) -> None:
        self._check()


class FullDiskFile:
    """A file on a full disk: opened, but no write fits."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def fill_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on in this test, writes to files opened from a descriptor (as the blob store opens its temporary
    files) fail with ENOSPC."""
    opened = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: FullDiskFile(opened(fd, *args, **kwargs)))

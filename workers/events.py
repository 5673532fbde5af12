"""Tasks of the events queue: feedback from farmers and agronomists, kept off the inference path."""

from __future__ import annotations

import logging
from typing import Any

from core.feedback import record_feedback
from schemas.queues import TaskName
from schemas.tasks import FeedbackEvent
from workers.app import app
from workers.base import RETRY_POLICY, MhogoTask

log = logging.getLogger(__name__)


@app.task(name=TaskName.FEEDBACK, bind=True, base=MhogoTask, **RETRY_POLICY)
def feedback(self: MhogoTask, payload: dict[str, Any]) -> str:
    event = FeedbackEvent.model_validate(payload)
    with self.session() as session:
        try:
            stored = record_feedback(session, event)
        except LookupError as exc:  # the API checked the job; a message for a missing job is dropped, not looped
            log.error("dropping feedback %s: %s", event.event_id, exc)
            return "dropped"
    return "stored" if stored else "duplicate"

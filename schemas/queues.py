"""Queue and task names: the only thing a producer needs to know to send work, so tasks are sent by name."""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    INFERENCE = "inference"  # one task per photo (decode, gates, model, store): one process per core
    EVENTS = "events"  # feedback, phone events, housekeeping (metrics tick, sweeper, retention): never inference
    RETRAINING = "retraining"  # long training runs, one at a time


class TaskName(StrEnum):
    DIAGNOSE = "mhogo.inference.diagnose"
    SWEEP = "mhogo.events.sweep"
    FEEDBACK = "mhogo.events.feedback"
    CLIENT_EVENTS = "mhogo.events.client"
    AGGREGATE = "mhogo.events.aggregate"
    RETENTION = "mhogo.events.retention"
    RETRAIN = "mhogo.retraining.train"


TASK_QUEUES: dict[TaskName, QueueName] = {
    TaskName.DIAGNOSE: QueueName.INFERENCE,
    TaskName.SWEEP: QueueName.EVENTS,
    TaskName.FEEDBACK: QueueName.EVENTS,
    TaskName.CLIENT_EVENTS: QueueName.EVENTS,
    TaskName.AGGREGATE: QueueName.EVENTS,
    TaskName.RETENTION: QueueName.EVENTS,
    TaskName.RETRAIN: QueueName.RETRAINING,
}

"""Queue and task names: the only thing a producer needs to know to send work, so tasks are sent by name."""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    PHOTOS = "photos"  # preprocess, quality filter, store: cheap, I/O bound, no torch
    INFERENCE = "inference"  # the CNN: one process per core, torch loaded once
    EVENTS = "events"  # feedback and logging events, never on the inference path
    RETRAINING = "retraining"  # long training runs, one at a time


class TaskName(StrEnum):
    PREPROCESS = "mhogo.photos.preprocess"
    FILTER = "mhogo.photos.filter"
    INFER = "mhogo.inference.classify"
    STORE = "mhogo.photos.store"
    SWEEP = "mhogo.photos.sweep"
    FEEDBACK = "mhogo.events.feedback"
    CLIENT_EVENTS = "mhogo.events.client"
    AGGREGATE = "mhogo.events.aggregate"
    RETRAIN = "mhogo.retraining.train"


TASK_QUEUES: dict[TaskName, QueueName] = {
    TaskName.PREPROCESS: QueueName.PHOTOS,
    TaskName.FILTER: QueueName.PHOTOS,
    TaskName.INFER: QueueName.INFERENCE,
    TaskName.STORE: QueueName.PHOTOS,
    TaskName.SWEEP: QueueName.PHOTOS,
    TaskName.FEEDBACK: QueueName.EVENTS,
    TaskName.CLIENT_EVENTS: QueueName.EVENTS,
    TaskName.AGGREGATE: QueueName.EVENTS,
    TaskName.RETRAIN: QueueName.RETRAINING,
}

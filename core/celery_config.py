"""Celery configuration: queues, routes and the reliability settings that make at-least-once delivery safe."""

from __future__ import annotations

from kombu.entity import Exchange, Queue

from core.config import settings
from schemas.queues import TASK_QUEUES, QueueName, TaskName

broker_url = settings.REDIS_URL
broker_connection_retry_on_startup = True
broker_transport_options = {
    # A message not acknowledged within this time is handed to another worker; it must outlast every task.
    "visibility_timeout": settings.VISIBILITY_TIMEOUT_S,
    "socket_connect_timeout": settings.PUBLISH_TIMEOUT_S,
    "socket_timeout": 30,
    # No blind replay of a command that timed out: for a publish, delivery is then unknown, and the API's answer
    # (queued, or left for the sweeper) must not guess. It also lets kombu send a group of uploads in one pipeline.
    "retry_on_timeout": False,
    "health_check_interval": 25,
}
# When the broker is down, the API must answer fast and leave the job to the sweeper, not hang.
task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

# JSON only: a message can never carry code to run.
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# Results live in the database; Celery keeps none.
task_ignore_result = True

# At-least-once: acknowledge after the task ran, give the message back if the process dies, take one at a time.
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True  # a task that failed for good has marked its job failed: do not loop
task_acks_on_timeout = (
    True  # a job stuck after a hard time limit is re-enqueued by the sweeper, a bounded number of times
)
worker_prefetch_multiplier = 1
task_soft_time_limit = settings.TASK_SOFT_TIME_LIMIT_S
task_time_limit = settings.TASK_TIME_LIMIT_S

# Every queue declared, every task routed by name; an unknown queue is a configuration error, not a new queue.
# Messages go straight to their queue (the nameless exchange): a named exchange made the Redis transport look its
# bindings up in Redis on every publish, a second round trip for each upload.
default_exchange = Exchange("", type="direct")
task_queues = tuple(Queue(queue.value, default_exchange, routing_key=queue.value) for queue in QueueName)
task_default_queue = QueueName.EVENTS.value
task_default_exchange = ""
task_default_routing_key = QueueName.EVENTS.value
task_create_missing_queues = False
task_routes = {name.value: {"queue": queue.value, "routing_key": queue.value} for name, queue in TASK_QUEUES.items()}

# Flower sees every task a worker takes: received, started, succeeded, failed, retried. Not "sent": that event cost
# the API a second Redis write per upload (bench/upload_api.py); the queues' lengths are in mhogo's own metrics.
worker_send_task_events = settings.TASK_EVENTS
task_send_sent_event = False
task_track_started = settings.TASK_EVENTS

beat_schedule = {
    "sweep-unqueued-jobs": {
        "task": TaskName.SWEEP.value,
        "schedule": settings.SWEEP_INTERVAL_S,
        "options": {"expires": settings.SWEEP_INTERVAL_S},  # the next sweep does it all again: never stack them
    },
    "aggregate-metrics": {
        "task": TaskName.AGGREGATE.value,
        "schedule": settings.METRICS_INTERVAL_S,
        "options": {"expires": settings.METRICS_INTERVAL_S},  # a tick nobody took in time is skipped, not stacked
    },
    "apply-retention": {
        "task": TaskName.RETENTION.value,
        "schedule": settings.RETENTION_INTERVAL_S,
        "options": {"expires": settings.RETENTION_INTERVAL_S},  # the next run deletes what this one would have
    },
}
beat_schedule_filename = str(settings.HOME / "celerybeat-schedule")
timezone = "UTC"
enable_utc = True
worker_hijack_root_logger = False

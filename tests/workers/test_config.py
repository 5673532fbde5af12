"""The Celery configuration that makes delivery safe: JSON only, explicit queues and names, timeouts that outlast
every task."""

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads, prepare_accept_content

from core.config import settings
from schemas.queues import TASK_QUEUES, QueueName, TaskName
from workers.app import app


class RunsWhenUnpickled:
    """A pickle that creates a file as it is read: what a message carrying code would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[[Path], None], tuple[Path]]:
        return Path.touch, (self.path,)


def test_messages_are_json_and_a_pickled_one_is_refused_unread(tmp_path: Path) -> None:
    """A message can never carry code to run: what the app sends is JSON, and a pickle is refused by kombu's decoder
    with the content types the app accepts, before anything is unpickled. (Late acknowledgement and requeue on a
    lost worker are proven by killing busy pool processes: tests/integration/test_faults.py.)"""
    with app.connection_for_write("memory://") as connection:  # a broker in this process
        app.send_task(TaskName.DIAGNOSE.value, args=("job", "photos/x.jpg"), connection=connection)
        queue = connection.SimpleQueue(TASK_QUEUES[TaskName.DIAGNOSE].value)
        sent = queue.get(timeout=5)
        queue.close()
    assert (sent.content_type, sent.payload[0]) == ("application/json", ["job", "photos/x.jpg"])
    ran = tmp_path / "ran"
    accept = prepare_accept_content(app.conf.accept_content)  # type: ignore[no-untyped-call]  # names to content types
    body = pickle.dumps(RunsWhenUnpickled(ran))
    with pytest.raises(ContentDisallowed):
        loads(body, "application/x-python-serialize", "binary", accept=accept)  # type: ignore[no-untyped-call]
    assert not ran.exists()


def test_visibility_timeout_outlasts_every_task() -> None:
    app.loader.import_default_modules()
    limits = [app.conf.task_time_limit]
    limits += [task.time_limit for name, task in app.tasks.items() if name.startswith("mhogo.") and task.time_limit]
    assert app.conf.broker_transport_options["visibility_timeout"] > max(limits)
    assert max(limits) >= settings.RETRAIN_TIME_LIMIT_S


def test_every_queue_declared_and_every_task_routed_by_its_explicit_name() -> None:
    app.loader.import_default_modules()
    declared = {queue.name for queue in app.conf.task_queues}
    assert declared == {queue.value for queue in QueueName}
    assert app.conf.task_create_missing_queues is False
    registered = {name for name in app.tasks if name.startswith("mhogo.")}
    assert registered == {name.value for name in TaskName}
    for name, queue in TASK_QUEUES.items():
        assert app.conf.task_routes[name.value]["queue"] == queue.value


def test_feedback_never_shares_the_inference_queue() -> None:
    assert TASK_QUEUES[TaskName.FEEDBACK] != TASK_QUEUES[TaskName.DIAGNOSE]
    assert TASK_QUEUES[TaskName.RETRAIN] not in {TASK_QUEUES[TaskName.DIAGNOSE], TASK_QUEUES[TaskName.FEEDBACK]}


def test_events_are_on_for_flower_but_not_one_more_write_per_upload() -> None:
    assert app.conf.worker_send_task_events is True
    assert app.conf.task_track_started is True
    assert app.conf.task_send_sent_event is False  # a second Redis write for every upload


def test_tasks_go_straight_to_their_queue() -> None:
    """The nameless exchange: the Redis transport puts the message on the queue's list without looking up an
    exchange's bindings first (a round trip per publish)."""
    assert all(queue.exchange.name == "" and queue.routing_key == queue.name for queue in app.conf.task_queues)
    assert {queue.name for queue in app.conf.task_queues} == {queue.value for queue in QueueName}


def test_sweeper_metrics_tick_and_retention_are_scheduled() -> None:
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert set(schedule) == {TaskName.SWEEP.value, TaskName.AGGREGATE.value, TaskName.RETENTION.value}
    assert schedule[TaskName.SWEEP.value]["schedule"] == settings.SWEEP_INTERVAL_S
    tick = schedule[TaskName.AGGREGATE.value]
    assert tick["schedule"] == settings.METRICS_INTERVAL_S
    assert tick["options"]["expires"] == settings.METRICS_INTERVAL_S  # a late tick is dropped, never stacked up
    retention = schedule[TaskName.RETENTION.value]
    assert retention["schedule"] == settings.RETENTION_INTERVAL_S
    assert retention["options"]["expires"] == settings.RETENTION_INTERVAL_S
    assert TASK_QUEUES[TaskName.RETENTION] == QueueName.EVENTS  # beside the sweeper, never on the inference path


def test_the_loop_runs_on_the_events_and_retraining_queues() -> None:
    for task in (TaskName.CLIENT_EVENTS, TaskName.AGGREGATE):
        assert TASK_QUEUES[task] == TASK_QUEUES[TaskName.FEEDBACK]

"""The Celery configuration that makes delivery safe: JSON only, late acks, explicit queues and names."""

from core.config import settings
from schemas.queues import TASK_QUEUES, QueueName, TaskName
from workers.app import app


def test_json_only_no_pickle() -> None:
    conf = app.conf
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]


def test_late_acks_and_requeue_on_worker_loss() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


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


def test_sweeper_and_metrics_tick_are_scheduled() -> None:
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert set(schedule) == {TaskName.SWEEP.value, TaskName.AGGREGATE.value}
    assert schedule[TaskName.SWEEP.value]["schedule"] == settings.SWEEP_INTERVAL_S
    tick = schedule[TaskName.AGGREGATE.value]
    assert tick["schedule"] == settings.METRICS_INTERVAL_S
    assert tick["options"]["expires"] == settings.METRICS_INTERVAL_S  # a late tick is dropped, never stacked up


def test_the_loop_runs_on_the_events_and_retraining_queues() -> None:
    for task in (TaskName.CLIENT_EVENTS, TaskName.AGGREGATE):
        assert TASK_QUEUES[task] == TASK_QUEUES[TaskName.FEEDBACK]

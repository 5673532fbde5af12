"""Trigger rules and the one-run-at-a-time guarantee, on SQLite and PostgreSQL, with the real Redis for the lock."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from core import jobs, registry, triggers
from core.config import Settings, settings
from core.feedback import record_feedback
from core.namespace import Namespace
from core.sweeper import sweep_runs
from schemas.errors import BrokerUnavailable, RegistryError
from schemas.findings import Finding
from schemas.tables import (
    Device,
    FeedbackSource,
    MetricPoint,
    ModelAliasName,
    ModelVersion,
    RetrainRun,
    RetrainStatus,
    SwitchName,
    utcnow,
)
from tests.utils.factories import label_event, make_device, make_job
from tests.utils.fakes import RecordingPublisher
from tests.utils.processes import ensure_default_redis

CHAMPION = "champion-v1"
NAMESPACE = Namespace(uuid.uuid4().hex[:12])  # this run's: its lock is no other run's
RULES = Settings(TRIGGER_ACCURACY_LAST_N=10, TRIGGER_ACCURACY_BELOW=0.6, TRIGGER_NEW_LABELS=1000,
                 TRIGGER_DRIFT_TICKS=3, TRIGGER_DRIFT_PSI=0.25, RETRAIN_COOLDOWN_S=3600)  # fmt: skip


@pytest.fixture
def client() -> redis.Redis:
    ensure_default_redis()
    return redis.Redis.from_url(settings.REDIS_URL)


def serve(session: Session, version: str = CHAMPION) -> None:
    session.add(ModelVersion(version=version, sha256="0" * 64, blob_key=f"models/{version}.pt", made_by="test"))
    session.commit()
    registry.set_alias(session, ModelAliasName.CHAMPION, version, "test")


def labelled(
    session: Session,
    predicted: str,
    truth: str,
    source: FeedbackSource = FeedbackSource.AGRONOMIST,
    device: Device | None = None,
) -> None:
    """A photo of `device` (a new one unless given) the champion answered, and its label: an agronomist's, or the
    word of the farmer whose phone sent it."""
    device = device or make_device(session)[0]
    job = make_job(session, device, key=uuid.uuid4().hex, data=uuid.uuid4().bytes)
    jobs.finish(session, job.id, Finding(label=predicted, model_version=CHAMPION))
    assert record_feedback(session, label_event(job.id, truth, source, device.id))


def test_accuracy_rule_fires_on_the_last_n_trusted_labels_only(session: Session) -> None:
    serve(session)
    for _ in range(9):
        labelled(session, "cmd", "cbsd")
    assert triggers.check_rules(session, RULES, utcnow()) is None  # 9 labels: not enough to judge
    labelled(session, "cmd", "cbsd", FeedbackSource.FARMER)  # one farmer alone is not trusted
    assert triggers.check_rules(session, RULES, utcnow()) is None
    labelled(session, "cmd", "cmd")
    firing = triggers.check_rules(session, RULES, utcnow())
    assert firing is not None
    assert firing.rule == "accuracy_below"
    assert firing.figures["accuracy"] == 0.1
    assert firing.figures["labelled"] == 10


def test_one_device_is_behind_at_most_its_share_of_the_labels_a_rule_reads(session: Session) -> None:
    """With farmers trusted on one device's word, one phone's wrong labels filled the accuracy rule's last N by
    themselves and fired it; now it brings at most MAX_DEVICE_SHARE of them, here one of ten."""
    rules = RULES.model_copy(update={"FARMERS_TO_AGREE": 1, "MAX_DEVICE_SHARE": 0.1})
    serve(session)
    flood, _ = make_device(session, "one phone")
    for _ in range(30):
        labelled(session, "cmd", "cbsd", FeedbackSource.FARMER, flood)
    assert triggers.check_rules(session, rules, utcnow()) is None
    assert triggers.check_rules(session, rules.model_copy(update={"MAX_DEVICE_SHARE": 1.0}), utcnow()) is not None
    for _ in range(9):  # nine other phones, one wrong label each: ten devices, one label each
        labelled(session, "cmd", "cgm", FeedbackSource.FARMER)
    firing = triggers.check_rules(session, rules, utcnow())
    assert firing is not None
    assert (firing.rule, firing.figures["accuracy"], firing.figures["labelled"]) == ("accuracy_below", 0.0, 10)


def test_one_device_brings_at_most_its_share_of_the_new_labels(session: Session) -> None:
    rules = RULES.model_copy(update={"FARMERS_TO_AGREE": 1, "MAX_DEVICE_SHARE": 0.25, "TRIGGER_NEW_LABELS": 8,
                                     "TRIGGER_ACCURACY_LAST_N": 1000})  # fmt: skip
    serve(session)
    flood, _ = make_device(session, "one phone")
    for _ in range(20):
        labelled(session, "cmd", "cmd", FeedbackSource.FARMER, flood)
    labelled(session, "cmd", "cmd")  # 2 of the flood's, with agronomists' labels: 3 of the 8 the rule needs
    assert triggers.check_rules(session, rules, utcnow()) is None
    for _ in range(5):
        labelled(session, "cmd", "cmd")
    firing = triggers.check_rules(session, rules, utcnow())
    assert firing is not None
    assert (firing.rule, firing.figures["new_labels"]) == ("new_labels", 8)


def test_good_accuracy_does_not_fire(session: Session) -> None:
    serve(session)
    for i in range(12):
        labelled(session, "cmd", "cmd" if i % 4 else "cgm")  # 0.75
    assert triggers.check_rules(session, RULES, utcnow()) is None


def test_new_labels_rule_counts_trusted_labels_since_the_champion_took_over(session: Session) -> None:
    serve(session)
    for _ in range(3):
        labelled(session, "cmd", "cmd")
    rules = RULES.model_copy(update={"TRIGGER_NEW_LABELS": 3})
    firing = triggers.check_rules(session, rules, utcnow())
    assert firing is not None
    assert firing.rule == "new_labels"
    assert firing.figures["new_labels"] == 3


def test_drift_rule_needs_every_one_of_the_last_ticks_above_the_threshold(session: Session) -> None:
    serve(session)
    now = utcnow()

    def tick(minutes_ago: int, value: float) -> None:
        at = now - timedelta(minutes=minutes_ago)
        session.add(MetricPoint(at=at, name="drift_psi", key="max", model_version=CHAMPION, value=value))
        session.commit()

    for minutes_ago, value in ((4, 0.9), (3, 0.1), (2, 0.4), (1, 0.5)):
        tick(minutes_ago, value)
    assert triggers.check_rules(session, RULES, now) is None
    tick(0, 0.3)
    firing = triggers.check_rules(session, RULES, now)
    assert firing is not None
    assert firing.rule == "drift"
    assert firing.figures["drift_psi"] == [0.4, 0.5, 0.3]


def test_many_workers_at_once_enqueue_exactly_one_run(engine: Engine, client: redis.Redis) -> None:
    with Session(engine) as session:
        serve(session)
        for _ in range(10):
            labelled(session, "cmd", "healthy")
    published: list[int] = []
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def publish(run_id: int) -> str:
        published.append(run_id)
        return f"task-{run_id}"

    def worker(n: int) -> None:
        try:
            start.wait()
            with Session(engine, expire_on_commit=False) as session:
                triggers.maybe_retrain(session, client, NAMESPACE, publish, RULES, f"worker {n}")
        except BaseException as exc:  # collected and raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with Session(engine) as session:
        runs = session.exec(select(RetrainRun)).all()
    assert len(runs) == 1
    assert published == [runs[0].id]
    assert runs[0].rule == "accuracy_below"
    assert runs[0].task_id == f"task-{runs[0].id}"
    assert runs[0].champion_version == CHAMPION
    assert runs[0].status == RetrainStatus.QUEUED


def test_the_database_refuses_a_second_open_run_even_without_the_lock(session: Session) -> None:
    session.add(RetrainRun(rule="a", fired_by="x"))
    session.commit()
    session.add(RetrainRun(rule="b", fired_by="y"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_cooldown_after_a_run_and_no_run_while_one_is_open(session: Session, client: redis.Redis) -> None:
    serve(session)
    for _ in range(10):
        labelled(session, "cmd", "healthy")
    publish = lambda run_id: "t"  # noqa: E731
    run = triggers.maybe_retrain(session, client, NAMESPACE, publish, RULES, "w")
    assert run is not None
    assert triggers.maybe_retrain(session, client, NAMESPACE, publish, RULES, "w") is None  # open
    triggers.finish_run(session, run, RetrainStatus.KEPT, "not better")
    assert triggers.maybe_retrain(session, client, NAMESPACE, publish, RULES, "w") is None  # cooling down
    again = triggers.maybe_retrain(
        session, client, NAMESPACE, publish, RULES.model_copy(update={"RETRAIN_COOLDOWN_S": 0}), "w"
    )
    assert again is not None
    assert again.id != run.id


def test_operators_can_pause_automatic_retraining(session: Session, client: redis.Redis) -> None:
    serve(session)
    for _ in range(10):
        labelled(session, "cmd", "healthy")
    triggers.set_switch(session, SwitchName.AUTO_RETRAIN, False, "ops", "holiday")
    assert triggers.maybe_retrain(session, client, NAMESPACE, lambda run_id: "t", RULES, "w") is None
    triggers.set_switch(session, SwitchName.AUTO_RETRAIN, True, "ops")
    assert triggers.maybe_retrain(session, client, NAMESPACE, lambda run_id: "t", RULES, "w") is not None


def test_a_run_that_could_not_be_enqueued_is_closed_with_the_reason(session: Session, client: redis.Redis) -> None:
    serve(session)

    def down(run_id: int) -> str:
        raise BrokerUnavailable("broker unavailable: refused")

    firing = triggers.Firing("operator", {})
    with pytest.raises(BrokerUnavailable):
        triggers.fire(session, client, NAMESPACE, down, firing, "ops", timedelta(0), utcnow())
    run = session.exec(select(RetrainRun)).one()
    assert run.status == RetrainStatus.FAILED
    assert run.open_slot is None
    assert "could not enqueue" in (run.decision or "")
    assert (
        triggers.fire(session, client, NAMESPACE, lambda run_id: "t", firing, "ops", timedelta(0), utcnow()) is not None
    )


def test_a_run_whose_message_the_broker_lost_is_sent_again_then_failed(session: Session, client: redis.Redis) -> None:
    """Redis restarted without its data took the run's message with it: the run stayed `queued` for ever, and every
    rule (and `mhogo retrain`) was refused while it was open."""
    serve(session)
    publisher = RecordingPublisher()
    fired = triggers.fire(session, client, NAMESPACE, publisher.publish_retrain, triggers.Firing("operator"), "ops",
                          timedelta(0), utcnow())  # fmt: skip
    assert fired is not None
    assert fired.id is not None
    assert (fired.enqueue_count, publisher.retrains) == (1, [fired.id])
    config = Settings(SWEEP_RUN_RESEND_AFTER_S=60, SWEEP_MAX_ENQUEUES=3)
    assert sweep_runs(session, publisher, config) == {"runs_resent": 0, "runs_failed": 0}  # not late yet
    for sends in (2, 3):
        lost(session, fired.id, minutes=2)
        assert sweep_runs(session, publisher, config) == {"runs_resent": 1, "runs_failed": 0}
        assert session.get(RetrainRun, fired.id).enqueue_count == sends  # type: ignore[union-attr]
    lost(session, fired.id, minutes=2)
    assert sweep_runs(session, publisher, config) == {"runs_resent": 0, "runs_failed": 1}
    run = session.get(RetrainRun, fired.id)
    assert run is not None
    assert (run.status, run.decision) == (RetrainStatus.FAILED, "not started after 3 sends of its message")
    assert publisher.retrains == [fired.id] * 3
    again = triggers.fire(session, client, NAMESPACE, publisher.publish_retrain, triggers.Firing("operator"), "ops",
                          timedelta(0), utcnow())  # fmt: skip
    assert again is not None  # the slot is free again


def test_a_run_still_running_past_its_time_limit_is_failed(session: Session) -> None:
    session.add(RetrainRun(rule="operator", fired_by="ops", status=RetrainStatus.RUNNING,
                           started_at=utcnow() - timedelta(hours=3)))  # fmt: skip
    session.commit()
    counts = sweep_runs(session, RecordingPublisher(), Settings(RETRAIN_TIME_LIMIT_S=3600))
    assert counts == {"runs_resent": 0, "runs_failed": 1}
    assert triggers.last_run(session).open_slot is None  # type: ignore[union-attr]


def test_an_operator_cancels_an_open_run(session: Session) -> None:
    session.add(RetrainRun(rule="operator", fired_by="ops"))
    session.commit()
    run = triggers.last_run(session)
    assert run is not None
    assert run.id is not None
    cancelled = triggers.cancel_run(session, run.id, "alice", "wrong labels")
    assert (cancelled.status, cancelled.decision, cancelled.open_slot) == (
        RetrainStatus.CANCELLED,
        "cancelled by alice: wrong labels",
        None,
    )
    assert triggers.start_run(session, run.id) is None  # a worker that takes its message does not train
    with pytest.raises(RegistryError, match="cancelled already"):
        triggers.cancel_run(session, run.id, "bob")


def lost(session: Session, run_id: int, minutes: float) -> None:
    """The run's last send was `minutes` ago, and nobody took its message."""
    session.execute(update(RetrainRun).where(col(RetrainRun.id) == run_id)
                    .values(enqueued_at=utcnow() - timedelta(minutes=minutes)))  # fmt: skip
    session.commit()

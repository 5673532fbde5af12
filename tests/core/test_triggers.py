"""Trigger rules and the one-run-at-a-time guarantee, on SQLite and PostgreSQL, with the real Redis for the lock."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core import jobs, registry, triggers
from core.config import Settings, settings
from core.feedback import record_feedback
from schemas.errors import BrokerUnavailable
from schemas.findings import Finding
from schemas.tables import (
    FeedbackSource,
    MetricPoint,
    ModelAliasName,
    ModelVersion,
    RetrainRun,
    RetrainStatus,
    SwitchName,
    utcnow,
)
from schemas.tasks import FeedbackEvent
from tests.utils.factories import make_device, make_job
from tests.utils.processes import ensure_default_redis

CHAMPION = "champion-v1"
RULES = Settings(TRIGGER_ACCURACY_LAST_N=10, TRIGGER_ACCURACY_BELOW=0.6, TRIGGER_NEW_LABELS=1000,
                 TRIGGER_DRIFT_TICKS=3, TRIGGER_DRIFT_PSI=0.25, RETRAIN_COOLDOWN_S=3600)  # fmt: skip


@pytest.fixture
def client() -> redis.Redis:
    ensure_default_redis()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(triggers.FIRE_LOCK)
    return client


def serve(session: Session, version: str = CHAMPION) -> None:
    session.add(ModelVersion(version=version, sha256="0" * 64, blob_key=f"models/{version}.pt", made_by="test"))
    session.commit()
    registry.set_alias(session, ModelAliasName.CHAMPION, version, "test")


def labelled(session: Session, predicted: str, truth: str, source: FeedbackSource = FeedbackSource.AGRONOMIST) -> None:
    device, _ = make_device(session)
    job = make_job(session, device, key=uuid.uuid4().hex, data=uuid.uuid4().bytes)
    jobs.finish(session, job.id, Finding(label=predicted, model_version=CHAMPION))
    event = FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job.id, label=truth, source=source, created_at=utcnow())
    assert record_feedback(session, event)


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
                triggers.maybe_retrain(session, client, publish, RULES, f"worker {n}")
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
    run = triggers.maybe_retrain(session, client, publish, RULES, "w")
    assert run is not None
    assert triggers.maybe_retrain(session, client, publish, RULES, "w") is None  # open
    triggers.finish_run(session, run, RetrainStatus.KEPT, "not better")
    assert triggers.maybe_retrain(session, client, publish, RULES, "w") is None  # cooling down
    again = triggers.maybe_retrain(session, client, publish, RULES.model_copy(update={"RETRAIN_COOLDOWN_S": 0}), "w")
    assert again is not None
    assert again.id != run.id


def test_operators_can_pause_automatic_retraining(session: Session, client: redis.Redis) -> None:
    serve(session)
    for _ in range(10):
        labelled(session, "cmd", "healthy")
    triggers.set_switch(session, SwitchName.AUTO_RETRAIN, False, "ops", "holiday")
    assert triggers.maybe_retrain(session, client, lambda run_id: "t", RULES, "w") is None
    triggers.set_switch(session, SwitchName.AUTO_RETRAIN, True, "ops")
    assert triggers.maybe_retrain(session, client, lambda run_id: "t", RULES, "w") is not None


def test_a_run_that_could_not_be_enqueued_is_closed_with_the_reason(session: Session, client: redis.Redis) -> None:
    serve(session)

    def down(run_id: int) -> str:
        raise BrokerUnavailable("broker unavailable: refused")

    firing = triggers.Firing("operator", {})
    with pytest.raises(BrokerUnavailable):
        triggers.fire(session, client, down, firing, "ops", timedelta(0), utcnow())
    run = session.exec(select(RetrainRun)).one()
    assert run.status == RetrainStatus.FAILED
    assert run.open_slot is None
    assert "could not enqueue" in (run.decision or "")
    assert triggers.fire(session, client, lambda run_id: "t", firing, "ops", timedelta(0), utcnow()) is not None

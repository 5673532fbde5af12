"""Trigger rules (settings `MHOGO_TRIGGER_*`) and the one way a retraining job gets enqueued.

Exactly one job, however many aggregation workers see a rule fire at the same moment: a Redis lock lets one of them
look at a time, the cooldown and the open run are checked under it, and the `open_slot` unique index of
`retrain_runs` makes the database itself refuse a second open run if the lock ever expired under a slow worker.

The label rules read trusted labels only (core.feedback), and no device is behind more than MAX_DEVICE_SHARE of
the labels a rule reads: one phone sending many labels cannot fire a run by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import redis
from redis.exceptions import LockError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import registry
from core.config import Settings
from core.feedback import capped, device_limit, iter_labelled, recent_labels
from core.monitoring import series
from core.namespace import Namespace
from schemas.errors import BrokerUnavailable, RegistryError
from schemas.tables import (
    ModelAliasName,
    OperatorSwitch,
    RetrainRun,
    RetrainStatus,
    SwitchName,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Firing:
    rule: str
    figures: dict[str, Any] = field(default_factory=dict)


def switch_on(session: Session, name: SwitchName, default: bool = True) -> bool:
    row = session.get(OperatorSwitch, name)
    return default if row is None else row.enabled


def set_switch(session: Session, name: SwitchName, enabled: bool, changed_by: str, reason: str | None = None) -> None:
    row = session.get(OperatorSwitch, name) or OperatorSwitch(name=name, enabled=enabled, changed_by=changed_by)
    row.enabled, row.changed_by, row.reason, row.changed_at = enabled, changed_by, reason, utcnow()
    session.add(row)
    session.commit()


def champion_since(session: Session) -> datetime | None:
    changes = registry.history(session, ModelAliasName.CHAMPION)
    return changes[-1].changed_at if changes else None


def last_run(session: Session) -> RetrainRun | None:
    return session.exec(select(RetrainRun).order_by(col(RetrainRun.id).desc()).limit(1)).first()


def check_rules(session: Session, config: Settings, now: datetime) -> Firing | None:
    """The first rule that fires for the serving champion, with the figures that made it fire."""
    champion = registry.alias_version(session, ModelAliasName.CHAMPION)
    if champion is None:
        return None
    n = config.TRIGGER_ACCURACY_LAST_N
    recent = recent_labels(session, config, "trusted", n, champion)  # no device behind more than its share
    if len(recent) >= n:
        accuracy = sum(p.label == p.predicted for p in recent) / len(recent)
        if accuracy < config.TRIGGER_ACCURACY_BELOW:
            figures = {"accuracy": round(accuracy, 4), "labelled": len(recent),
                       "threshold": config.TRIGGER_ACCURACY_BELOW, "model_version": champion}  # fmt: skip
            return Firing("accuracy_below", figures)
    since = max(filter(None, (champion_since(session), getattr(last_run(session), "fired_at", None))), default=None)
    # Each device brings at most its share of the labels the rule needs; counted only as far as the rule needs.
    limit = device_limit(config.MAX_DEVICE_SHARE, config.TRIGGER_NEW_LABELS)
    photos = iter_labelled(session, config.FARMERS_TO_AGREE, since=since, source="trusted")
    new = list(islice(capped(photos, "trusted", limit), config.TRIGGER_NEW_LABELS))
    if len(new) >= config.TRIGGER_NEW_LABELS:
        return Firing("new_labels", {"new_labels": len(new), "threshold": config.TRIGGER_NEW_LABELS,
                                     "since": since.isoformat() if since else None})  # fmt: skip
    ticks = config.TRIGGER_DRIFT_TICKS
    drift = series(session, "drift_psi", now - timedelta(days=1), key="max", version=champion)[-ticks:]
    if len(drift) == ticks and all(p.value > config.TRIGGER_DRIFT_PSI for p in drift):
        return Firing("drift", {"drift_psi": [p.value for p in drift], "threshold": config.TRIGGER_DRIFT_PSI,
                                "ticks": ticks, "model_version": champion})  # fmt: skip
    return None


def fire(
    session: Session,
    client: redis.Redis,
    namespace: Namespace,
    publish: Callable[[int], str],
    firing: Firing,
    fired_by: str,
    cooldown: timedelta,
    now: datetime,
) -> RetrainRun | None:
    """Record the run and enqueue its job, unless one is open or the last fired within the cooldown. `publish`
    sends the job for a run id and returns its task id. The lock is the deployment's: another deployment's runs are
    numbered from 1 in their own database."""
    try:
        with client.lock(namespace.fire_lock, timeout=60, blocking_timeout=30):
            previous = last_run(session)
            if previous is not None and (RetrainStatus(previous.status).open or previous.fired_at > now - cooldown):
                return None
            champion = registry.alias_version(session, ModelAliasName.CHAMPION)
            run = RetrainRun(rule=firing.rule, figures=firing.figures, fired_by=fired_by, fired_at=now,
                             champion_version=champion)  # fmt: skip
            session.add(run)
            try:
                session.commit()
            except IntegrityError:  # an open run exists after all: the database refused the second one
                session.rollback()
                return None
            assert run.id is not None
            try:
                send(session, run, publish, now)
            except BrokerUnavailable as exc:
                finish_run(session, run, RetrainStatus.FAILED, f"could not enqueue: {exc}")
                raise
            log.warning("retraining run %d fired by %s: %s %s", run.id, fired_by, firing.rule, firing.figures)
            return run
    except LockError:
        log.warning("the retraining trigger lock is busy; the next event looks again")
        return None


def send(session: Session, run: RetrainRun, publish: Callable[[int], str], now: datetime) -> None:
    """Send the run's message (again), and note when and how often."""
    assert run.id is not None
    run.task_id = publish(run.id)
    run.enqueued_at, run.enqueue_count = now, run.enqueue_count + 1
    session.add(run)
    session.commit()


def maybe_retrain(
    session: Session,
    client: redis.Redis,
    namespace: Namespace,
    publish: Callable[[int], str],
    config: Settings,
    fired_by: str,
) -> RetrainRun | None:
    """Check the rules and fire the first that holds. Cheap when nothing fires: a few indexed queries."""
    now = utcnow()
    if not config.AUTO_RETRAIN or not switch_on(session, SwitchName.AUTO_RETRAIN):
        return None
    previous = last_run(session)
    cooldown = timedelta(seconds=config.RETRAIN_COOLDOWN_S)
    if previous is not None and (RetrainStatus(previous.status).open or previous.fired_at > now - cooldown):
        return None  # the same check runs again under the lock; this one spares the rules' queries
    firing = check_rules(session, config, now)
    if firing is None:
        return None
    return fire(session, client, namespace, publish, firing, fired_by, cooldown, now)


def finish_run(session: Session, run: RetrainRun, status: RetrainStatus, decision: str) -> None:
    run.status, run.decision, run.finished_at, run.open_slot = status, decision[:500], utcnow(), None
    session.add(run)
    session.commit()


def cancel_run(session: Session, run_id: int, by: str, reason: str | None = None) -> RetrainRun:
    """An operator stops an open run: it takes no decision, even if its worker is training it now, and the next
    rule may fire after the cooldown."""
    run = session.get(RetrainRun, run_id)
    if run is None:
        raise RegistryError(f"no retraining run {run_id}")
    if not RetrainStatus(run.status).open:
        raise RegistryError(f"retraining run {run_id} is {run.status} already")
    finish_run(session, run, RetrainStatus.CANCELLED, f"cancelled by {by}" + (f": {reason}" if reason else ""))
    return run


def stale_runs(
    session: Session, now: datetime, resend_after: timedelta, time_limit: timedelta
) -> tuple[list[RetrainRun], list[RetrainRun]]:
    """Open runs whose message was lost: queued and not started within `resend_after` of their last send (to send
    again), and running for longer than a run may (its worker died: to fail)."""
    open_runs = session.exec(select(RetrainRun).where(col(RetrainRun.open_slot).is_not(None))).all()
    queued = [run for run in open_runs if run.status == RetrainStatus.QUEUED
              and (run.enqueued_at or run.fired_at) < now - resend_after]  # fmt: skip
    running = [run for run in open_runs if run.status == RetrainStatus.RUNNING
               and run.started_at is not None and run.started_at < now - time_limit]  # fmt: skip
    return queued, running


def start_run(session: Session, run_id: int) -> RetrainRun | None:
    """Mark the run running. None when it is finished already (a redelivered message): do not train again."""
    run = session.get(RetrainRun, run_id)
    if run is None:
        raise RegistryError(f"no retraining run {run_id}")
    if not RetrainStatus(run.status).open:
        return None
    run.status, run.started_at = RetrainStatus.RUNNING, utcnow()
    session.add(run)
    session.commit()
    return run


def runs(session: Session, limit: int = 50) -> list[RetrainRun]:
    return list(session.exec(select(RetrainRun).order_by(col(RetrainRun.id).desc()).limit(limit)).all())


def summaries(runs: Sequence[RetrainRun]) -> list[dict[str, Any]]:
    """What `mhogo status` and the dashboard show of each run."""
    out = []
    for run in runs:
        pooled = {who: run.evaluation.get(who, {}).get("pooled", {}) for who in ("champion", "challenger")}
        out.append({
            "id": run.id, "rule": run.rule, "figures": run.figures, "status": str(run.status), "fired_by": run.fired_by,
            "fired_at": run.fired_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "champion": run.champion_version, "challenger": run.challenger_version,
            "accuracy": {who: figures.get("accuracy") for who, figures in pooled.items()},
            "decision": run.decision, "dataset": {k: v for k, v in run.dataset.items() if not k.endswith("_dir")},
        })  # fmt: skip
    return out

"""`mhogo status`: the report and its terminal view, on an hour of ticks, two models and one retraining run."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import Engine, insert
from sqlmodel import Session

from core import monitoring, triggers
from core.config import Settings
from core.db import get_engine
from core.namespace import Namespace, deployment_id
from core.status import render_text, status_report
from mhogo.cli import main, operations
from schemas.tables import (
    AliasChange,
    MetricPoint,
    ModelAlias,
    ModelAliasName,
    ModelVersion,
    RetrainRun,
    RetrainStatus,
    SwitchName,
    utcnow,
)
from tests.utils.processes import free_port

OLD, NEW = "lite1-20261129-222301", "lite1-20261130-run1"
STAGES = ("decode", "prepare", "model", "end_to_end")
REASONS = ("not_cassava_leaf", "too_dark", "too_blurry")
QUEUES = ("photos", "inference", "events", "retraining", "in_flight")
DECISION = "challenger wins: accuracy 0.712 > 0.655 & no class drops <10% (<b>holdout</b> + feedback)"


@dataclass(frozen=True)
class Seeded:
    now: datetime
    promoted_at: datetime
    last: dict[tuple[str, str, str | None], float]  # the last tick's figures


def tick_points(at: datetime, minute: int, champion: str) -> list[MetricPoint]:
    """One tick of plausible figures: a daily-ish wave of photos, latency that follows the load, a queue that builds
    up, accuracy that drops for the old model and recovers with the new one."""
    wave = 1 + 0.5 * math.sin(minute / 9)
    point = monitoring.point
    points = [point(at, "photos_per_minute", 12 * wave)]
    points += [point(at, "photos_per_minute", share * 12 * wave, status)
               for status, share in (("classified", 0.8), ("rejected", 0.17), ("failed", 0.03))]  # fmt: skip
    rates = {"not_cassava_leaf": 0.08 + 0.02 * wave, "too_dark": 0.04, "too_blurry": 0.03 * wave}
    points += [point(at, "rejection_rate", rate, reason) for reason, rate in rates.items()]
    points += [point(at, "rejection_rate", sum(rates.values()), "all"), point(at, "failure_rate", 0.03)]
    for stage, base in zip(STAGES, (40, 15, 180, 900), strict=True):
        points += [point(at, "latency_ms", base * wave * factor, f"{stage}:p{q}")
                   for q, factor in zip(monitoring.PERCENTILES, (1, 2.2, 3.5), strict=True)]  # fmt: skip
    lengths = (3 * wave, minute % 17, 1, 0 if minute < 20 else 1, 4)
    points += [point(at, "queue_length", round(n), queue) for queue, n in zip(QUEUES, lengths, strict=True)]
    for version, accuracy in ((OLD, max(0.4, 0.66 - minute / 600)), (NEW, min(0.9, 0.7 + minute / 1000))):
        if version == NEW and minute < 25:
            continue  # the new model has no feedback before it serves
        for source, shift in (("trusted", 0.0), ("agronomist", 0.02), ("farmer", -0.05)):
            points += [point(at, "labelled", 40 + minute, source, version),
                       point(at, "accuracy", accuracy + shift, source, version),
                       point(at, "macro_f1", accuracy + shift - 0.04, source, version),
                       point(at, "ece", 0.06, source, version)]  # fmt: skip
        points.append(point(at, "confusion", 3, "cmd>cbsd", version))
    drift = {"max": 0.1 + 0.2 * (minute > 40), "class_mix": min(0.2, 0.05 + minute / 1000), "mean_luma": 0.04}
    points += [point(at, "drift_psi", value, key, champion) for key, value in drift.items()]
    return points


def seed(session: Session, now: datetime | None = None, minutes: int = 60) -> Seeded:
    """An hour of one-minute ticks; OLD served until a retraining run promoted NEW half an hour ago."""
    now = now or utcnow()
    start, promoted_at = now - timedelta(minutes=minutes - 1), now - timedelta(minutes=30)
    session.add(ModelVersion(version=OLD, sha256="a" * 64, blob_key="models/a.pt", made_by="seed model",
                             created_at=now - timedelta(days=1)))  # fmt: skip
    session.add(ModelVersion(version=NEW, sha256="b" * 64, blob_key="models/b.pt", parent_version=OLD,
                             made_by="retraining run 1 (accuracy_below)", created_at=promoted_at))  # fmt: skip
    session.commit()
    session.add_all([
        AliasChange(alias=ModelAliasName.CHAMPION, version=OLD, changed_by="mhogo",
                    reason="first start: the seed model serves", changed_at=now - timedelta(hours=20)),
        AliasChange(alias=ModelAliasName.CHALLENGER, version=NEW, changed_by="retraining run 1 (accuracy_below)",
                    reason="trained", changed_at=promoted_at - timedelta(minutes=1)),
        AliasChange(alias=ModelAliasName.CHAMPION, version=NEW, previous_version=OLD, changed_by="retraining run 1",
                    reason=DECISION, changed_at=promoted_at),
        ModelAlias(alias=ModelAliasName.CHAMPION, version=NEW, updated_at=promoted_at),
        ModelAlias(alias=ModelAliasName.CHALLENGER, version=NEW, updated_at=promoted_at),
        RetrainRun(rule="accuracy_below", figures={"accuracy": 0.58, "labelled": 30, "threshold": 0.6},
                   fired_by="aggregation worker", fired_at=now - timedelta(minutes=50), status=RetrainStatus.PROMOTED,
                   open_slot=None, champion_version=OLD, challenger_version=NEW, decision=DECISION,
                   evaluation={"champion": {"pooled": {"accuracy": 0.655}},
                               "challenger": {"pooled": {"accuracy": 0.712}}},
                   started_at=now - timedelta(minutes=49), finished_at=promoted_at),
    ])  # fmt: skip
    last: list[MetricPoint] = []
    for minute in range(minutes):
        at = start + timedelta(minutes=minute)
        last = tick_points(at, minute, NEW if at >= promoted_at else OLD)
        rows = [{"at": p.at, "name": p.name, "key": p.key, "model_version": p.model_version, "value": p.value}
                for p in last]  # fmt: skip
        session.execute(insert(MetricPoint), rows)  # a day of ticks is 170 000 rows: not one ORM object each
    session.commit()
    return Seeded(now, promoted_at, {(p.name, p.key, p.model_version): p.value for p in last})


@pytest.fixture
def seeded(sqlite_engine: Engine) -> Seeded:
    with Session(sqlite_engine) as session:
        return seed(session)


@pytest.fixture
def db(sqlite_engine: Engine) -> Iterator[Session]:
    with Session(sqlite_engine, expire_on_commit=False) as session:
        yield session


def cells(text: str, first: str) -> list[str]:
    """The cells of the first line of a terminal table that starts with `first`."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    return next(row for row in rows if row[0] == first)


def figures(text: str, label: str) -> str:
    """What follows `label` on its line of the figures section."""
    return next(line.strip()[len(label) :].strip() for line in text.splitlines() if line.strip().startswith(label))


def down_redis() -> redis.Redis:
    return redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1, socket_timeout=1)


def test_the_report_holds_the_last_ticks_figures(seeded: Seeded, db: Session) -> None:
    report = status_report(db, down_redis(), Settings(), hours=6)
    last = seeded.last
    assert report["tick"]["at"] is not None
    assert not report["tick"]["stale"]
    assert report["photos_per_minute"]["all"] == last[("photos_per_minute", "", None)]
    assert report["photos_per_minute"]["rejected"] == last[("photos_per_minute", "rejected", None)]
    assert report["latency_ms"]["end_to_end"]["p95"] == last[("latency_ms", "end_to_end:p95", None)]
    assert next(iter(report["latency_ms"])) == "end_to_end"
    assert set(report["latency_ms"]) == set(STAGES)
    assert report["rejection_rate"]["too_dark"] == pytest.approx(0.04)
    assert set(report["rejection_rate"]) == {*REASONS, "all"}
    assert report["failure_rate"] == pytest.approx(0.03)
    assert report["feedback"][NEW]["trusted"]["accuracy"] == last[("accuracy", "trusted", NEW)]
    assert report["feedback"][OLD]["farmer"]["labelled"] == last[("labelled", "farmer", OLD)]
    assert list(report["feedback"][NEW]) == ["trusted", "agronomist", "farmer"]
    assert report["drift"]["model_version"] == NEW
    assert list(report["drift"]["scores"])[:2] == ["max", "class_mix"]
    assert report["drift"]["scores"]["max"] == pytest.approx(0.3)
    json.dumps(report)  # every value is plain JSON


def test_queues_are_read_live_and_from_the_last_tick_when_redis_is_down(seeded: Seeded, db: Session) -> None:
    down = status_report(db, down_redis(), Settings(), hours=6)
    assert down["redis"]["ok"] is False
    assert "Redis did not answer" in down["redis"]["error"]
    assert down["queues"]["source"] == "last tick"
    assert down["queues"]["lengths"] == {queue: seeded.last[("queue_length", queue, None)] for queue in QUEUES}
    client = fakeredis.FakeRedis()
    ours = Namespace(deployment_id(db))  # the queues of the database's deployment, and no other's
    client.rpush(ours.queue("inference"), *range(7))
    client.rpush(Namespace("b2b2b2b2b2b2").queue("inference"), *range(3))
    live = status_report(db, client, Settings(), hours=6)
    assert live["deployment"] == ours.deployment
    assert live["redis"] == {"ok": True, "error": None}
    assert live["queues"]["source"] == "redis"
    assert live["queues"]["lengths"] == {"inference": 7, "events": 0, "retraining": 0, "in_flight": 0}
    assert "queue_length" not in live


def test_the_report_holds_models_switches_history_and_runs(seeded: Seeded, db: Session) -> None:
    triggers.set_switch(db, SwitchName.AUTO_PROMOTION, False, "alice", "labels of last week under review")
    report = status_report(db, None, Settings(AUTO_RETRAIN=False), hours=6)
    assert report["models"]["champion"]["version"] == NEW
    assert report["models"]["champion"]["parent_version"] == OLD
    assert report["models"]["challenger"]["version"] == NEW
    promotion, retrain = report["switches"]["auto_promotion"], report["switches"]["auto_retrain"]
    assert (promotion["on"], promotion["changed_by"]) == (False, "alice")
    assert promotion["reason"] == "labels of last week under review"
    assert (retrain["on"], retrain["switch"], retrain["setting"]) == (False, True, False)
    # the move of the period, and the one before it: OLD served when the six hours began
    assert [(c["version"], c["previous_version"]) for c in report["champion_history"]] == [(OLD, None), (NEW, OLD)]
    [run] = report["runs"]
    assert (run["rule"], run["status"], run["decision"]) == ("accuracy_below", "promoted", DECISION)
    assert run["accuracy"] == {"champion": 0.655, "challenger": 0.712}
    assert run["fired_by"] == "aggregation worker"
    assert report["redis"]["ok"] is None


def test_a_short_period_still_shows_the_last_run_and_the_serving_champion(seeded: Seeded, db: Session) -> None:
    report = status_report(db, None, Settings(), hours=0.1)
    assert [c["version"] for c in report["champion_history"]] == [NEW]
    assert [run["rule"] for run in report["runs"]] == ["accuracy_below"]


def test_render_text_shows_what_an_operator_looks_for(seeded: Seeded, db: Session) -> None:
    triggers.set_switch(db, SwitchName.AUTO_RETRAIN, False, "bob", "holiday")
    text = render_text(status_report(db, down_redis(), Settings(), hours=6))
    print(text)
    assert cells(text, "champion")[1] == NEW
    assert cells(text, "challenger")[1] == NEW
    assert cells(text, "auto promotion")[1] == "on"
    assert cells(text, "auto retrain")[1:3] == ["OFF", f"by bob at {seeded.now:%Y-%m-%d %H:%M}; holiday"]
    last = seeded.last
    queues = "  ".join(f"{queue} {last[('queue_length', queue, None)]:g}" for queue in QUEUES)
    assert figures(text, "queues") == f"{queues}  (last tick)"
    assert figures(text, "redis").startswith("Redis did not answer")
    assert figures(text, "failures") == "3.0%"
    assert figures(text, "rejections").startswith("all 17.")
    assert "too_dark 4.0%" in figures(text, "rejections")
    assert cells(text, "end_to_end")[1:] == [f"{last[('latency_ms', f'end_to_end:p{q}', None)]:.0f}"
                                             for q in (50, 95, 99)]  # fmt: skip
    run = cells(text, "1")
    assert run[3:5] == ["promoted", "accuracy_below"]
    assert run[-1] == DECISION
    assert "first start: the seed model serves" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("version"))
    row = next(line for line in lines if line.strip().startswith(NEW) and "trusted" in line)
    assert row.index("trusted") == header.index("source")  # columns line up


def test_an_empty_database_renders_without_figures(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        report = status_report(session, None, Settings(), hours=6)
    assert report["tick"]["at"] is None
    assert report["models"] == {"champion": None, "challenger": None}
    assert (report["champion_history"], report["runs"]) == ([], [])
    text = render_text(report)
    assert "Last tick: none in the last 6 h" in text
    assert "no champion yet" in text


@pytest.fixture
def cli_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """The CLI on the test's database (settings are read at import, so the module's copy is swapped)."""
    config = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'test.db'}", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(operations, "settings", config)
    yield config
    get_engine(config.database_url).dispose()


def test_status_json_on_the_command_line(seeded: Seeded, cli_settings: Settings) -> None:
    result = CliRunner().invoke(main, ["status", "--json", "--hours", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["hours"] == 2
    assert report["models"]["champion"]["version"] == NEW
    assert report["runs"][0]["decision"] == DECISION
    assert report["redis"]["ok"] is False
    text = CliRunner().invoke(main, ["status"])
    assert text.exit_code == 0, text.output
    assert NEW in text.stdout
    assert "Retraining runs" in text.stdout


def test_switches_on_the_command_line(seeded: Seeded, cli_settings: Settings) -> None:
    paused = CliRunner().invoke(main, ["promotion", "pause", "--by", "alice", "--reason", "bad labels"])
    assert paused.exit_code == 0, paused.output
    assert paused.stdout.strip() == "automatic promotion: paused (by alice: bad labels)"
    resumed = CliRunner().invoke(main, ["retraining", "resume", "--by", "bob"])
    assert resumed.stdout.strip() == "automatic retraining: on (by bob)"
    with Session(get_engine(cli_settings.database_url)) as session:
        assert triggers.switch_on(session, SwitchName.AUTO_PROMOTION) is False
        assert triggers.switch_on(session, SwitchName.AUTO_RETRAIN) is True
    still_off = cli_settings.model_copy(update={"AUTO_RETRAIN": False})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operations, "settings", still_off)
        blocked = CliRunner().invoke(main, ["retraining", "resume"])
    assert "automatic retraining: paused" in blocked.stdout
    assert "MHOGO_AUTO_RETRAIN is false" in blocked.stderr

"""`mhogo scenario retrain`: the whole loop on the real stack, as an operator would watch it.

A champion trained on part of the photos serves; the other photos arrive from a phone; agronomists label them with
their true class, several at once; a trigger rule fires; exactly one retraining run builds a dataset with the
trusted labels, trains a challenger, judges both on a frozen holdout and on held-out feedback, and promotes the
challenger or keeps it out with the reason; photos keep arriving across the switch, and every one of them gets
exactly one result. The run prints its timeline and writes it, with every figure, to `scenario.json`.

The photos are split by near-duplicate group with a fixed seed: holdout (frozen, never trained on), base (the
champion's training data and the retraining base) and stream (what the phone sends); negatives likewise. The phone
is the reference client (producers/phone.py): it sends the photos as they are and honours the API's rate limits and
Retry-After. The agronomists' labels do not come from the phone (a device token speaks for a farmer, and the API
refuses an "agronomist" from one): until agronomists have accounts of their own, they go onto the events queue as
core.feedback.agronomist_label makes them, with who gave them, as an agronomist's workbench would send them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from sqlalchemy import func
from sqlmodel import Session, col, select

from core import registry, telemetry
from core.config import Settings
from core.db import open_database
from core.devices import add_device
from core.feedback import agronomist_label
from core.namespace import Namespace, bind, resolve
from core.publisher import Publisher
from mhogo.stack import SERVICES, Service, Stack, embedded_redis_command, free_port, redis_answers, wait_until_healthy
from producers.phone import Phone, open_phone
from schemas.errors import BadInput
from schemas.queues import TaskName
from schemas.statuses import JobStatus
from schemas.tables import Job, ModelAliasName, RetrainRun, RetrainStatus, utcnow

if TYPE_CHECKING:
    from ml.train import TrainConfig

PARTS = ("holdout", "base", "stream")
FRACTIONS = (0.2, 0.4, 0.4)
SEED = 7
T = TypeVar("T")
CORES = os.cpu_count() or 1
AGRONOMIST = "scenario agronomist"  # who labels the stream: the photos' true classes


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str | None  # its class, or None for a photo that is not a cassava leaf


def split_data(data: Path, out: Path) -> dict[str, list[Photo]]:
    """Lay out holdout/ and base/ like ../shared/data (symlinks) and return every part's photos."""
    from ml.data import class_root, negatives_beside, scan
    from ml.splits import assign_groups, near_duplicate_groups, perceptual_hashes
    from ml.train import CLASSES

    parts: dict[str, list[Photo]] = {name: [] for name in PARTS}
    for samples in (scan(data, CLASSES), negatives_beside(data) or negatives_beside(class_root(data, CLASSES).parent)):
        groups = near_duplicate_groups(perceptual_hashes(samples))
        for sample, part in zip(samples, assign_groups(samples, groups, FRACTIONS, SEED), strict=True):
            parts[PARTS[part]].append(Photo(sample.path, CLASSES[sample.label] if sample.label >= 0 else None))
    for name in ("holdout", "base"):
        for label in CLASSES:
            (out / name / "cassava" / label).mkdir(parents=True, exist_ok=True)
        (out / name / "negatives").mkdir(parents=True, exist_ok=True)
        for photo in parts[name]:
            folder = out / name / ("cassava/" + photo.label if photo.label else "negatives")
            (folder / photo.path.name).symlink_to(photo.path.resolve())
    return parts


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)
    out: Callable[[str], None] = print

    def mark(self, what: str, **figures: Any) -> None:
        seconds = round(time.monotonic() - self.started, 1)
        self.events.append({"t_s": seconds, "at": utcnow().isoformat(), "event": what, **figures})
        extra = "  ".join(f"{k}={v}" for k, v in figures.items())
        self.out(f"[{seconds:7.1f} s] {what}{'  ' + extra if extra else ''}")


def train_champion(base: Path, out: Path, config: ScenarioConfig, settings: Settings, threads: int) -> str:
    """The champion, trained on the base part only: with the shipped model's recipe unless the scenario brings its
    own. The retraining run repeats the champion's recipe, so the challenger is trained with it too."""
    from ml.checkpoint import load_checkpoint
    from ml.train import TrainConfig, train

    recipe = config.recipe
    if recipe is None:
        params = load_checkpoint(settings.model_path).meta.get("params")
        recipe = TrainConfig.from_dict(params) if params else TrainConfig()
    recipe = dataclasses.replace(recipe, dry_run=config.quick, threads=threads)
    result = train(base, out, recipe, settings.quality_thresholds, made_by="scenario: champion on the base part")
    return result.checkpoint.version


@dataclass
class ScenarioConfig:
    data: Path
    home: Path
    quick: bool = False  # two batches a model (the challenger too, unless MHOGO_RETRAIN_DRY_RUN says otherwise)
    recipe: TrainConfig | None = None  # the champion's; default: the shipped model's
    redis_url: str | None = None  # default: a redis-server of its own, so nothing mixes with a running stack
    extra_env: dict[str, str] = field(default_factory=dict)
    stream_during_retraining_s: float = 2.0  # one photo this often while the challenger trains and takes over
    # When the run keeps the challenger, an operator promotes it by hand (`mhogo models promote`), so the switch is
    # watched all the same: photos arriving across it, each with one result, the new model serving after it.
    promote_kept: bool = False
    # Called with the live stack's settings and operator password before it stops (a dashboard screenshot, say).
    before_stop: Callable[[Settings, str], None] | None = None


MIN_STREAM_CASSAVA = 10  # fewer labelled photos than this cannot tell a weak champion from a good one
ACCURACY_LAST_N = 20  # the accuracy rule's window on a folder large enough for it


def rules_for(stream: list[Photo]) -> dict[str, str]:
    """The trigger rules scaled to the photos the stream has, so that a rule can fire on the labels the run will
    send: the accuracy rule's window is at most 60 % of the stream's cassava photos (the gates turn some away).
    Refused at once, before minutes of training, when the stream is too small for any rule to tell."""
    cassava = sum(photo.label is not None for photo in stream)
    if cassava < MIN_STREAM_CASSAVA:
        folder = math.ceil(MIN_STREAM_CASSAVA / FRACTIONS[PARTS.index("stream")])
        raise BadInput(f"the stream part holds {cassava} cassava photos, and the scenario needs at least "
                       f"{MIN_STREAM_CASSAVA} to label: give a folder of at least {folder} cassava photos (the stream "
                       "is 40 % of them)")  # fmt: skip
    last_n = min(ACCURACY_LAST_N, max(5, int(cassava * 0.6)))
    return {"MHOGO_TRIGGER_ACCURACY_LAST_N": str(last_n), "MHOGO_TRIGGER_NEW_LABELS": str(max(30, 2 * last_n))}


def scenario_env(config: ScenarioConfig, champion: Path) -> dict[str, str]:
    data = config.home / "data"
    return {
        "MHOGO_HOME": str(config.home),
        "MHOGO_DATABASE_URL": f"sqlite:///{config.home / 'mhogo.db'}",
        "MHOGO_MODEL_PATH": str(champion),
        "MHOGO_TRAIN_DATA_DIR": str(data / "base"),
        "MHOGO_HOLDOUT_DIR": str(data / "holdout"),
        "MHOGO_RETRAIN_DRY_RUN": "true" if config.quick else "false",
        "MHOGO_METRICS_INTERVAL_S": "5",
        "MHOGO_TRIGGER_ACCURACY_BELOW": "0.8",
        "MHOGO_FEEDBACK_HOLDOUT_SHARE": "0.3",
        "MHOGO_RETRAIN_TIME_LIMIT_S": "3600",
        # Serving and training share this machine's cores: each gets its own half (README, RETRAIN_TORCH_THREADS).
        "MHOGO_TORCH_THREADS": str(max(1, CORES // 2)),
        "MHOGO_RETRAIN_TORCH_THREADS": str(max(1, CORES - CORES // 2)),
        "MHOGO_API_PORT": str(free_port()),
        "MHOGO_FLOWER_PORT": str(free_port()),
    } | config.extra_env


# Two aggregation workers: feedback lands on both at once, and still one run is enqueued.
SCENARIO_SERVICES = (*SERVICES, Service("worker-events-2", ("worker", "events", "--name", "events2@%h")))


def run_scenario(config: ScenarioConfig, settings: Settings, out: Callable[[str], None] = print) -> dict[str, Any]:
    from ml.train import code_version

    config.home.mkdir(parents=True, exist_ok=True)
    timeline = Timeline(out=out)
    parts = split_data(config.data, config.home / "data")
    timeline.mark("data split", **{name: len(photos) for name, photos in parts.items()})
    rules = rules_for(parts["stream"])
    champion_path = config.home / "champion.pt"
    env = rules | scenario_env(config, champion_path)
    # Trained with the threads a retraining run gets, as the challenger will be.
    threads = int(env["MHOGO_RETRAIN_TORCH_THREADS"])
    champion = train_champion(config.home / "data" / "base", champion_path, config, settings, threads)
    timeline.mark("champion trained on the base part", version=champion)
    stack_settings = Settings(**{k.removeprefix("MHOGO_"): v for k, v in env.items()})  # type: ignore[arg-type]
    engine = open_database(stack_settings.database_url)
    stack = Stack(stack_settings, services=SCENARIO_SERVICES, out=sys.stdout)
    stack.env |= env | {"MHOGO_LOG_LEVEL": os.environ.get("MHOGO_LOG_LEVEL", "WARNING")}
    report: dict[str, Any] = {"home": str(config.home), "code_version": code_version(), "quick": config.quick}
    try:
        stack_settings = start_stack(stack, stack_settings, config.redis_url, config.home)
        report |= _drive(stack, stack_settings, engine, parts, timeline, config)
        if config.before_stop is not None:
            config.before_stop(stack_settings, stack.env["MHOGO_FLOWER_PASSWORD"])
    finally:
        stack.stop()
    report["timeline"] = timeline.events
    (config.home / "scenario.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def start_stack(stack: Stack, settings: Settings, redis_url: str | None, home: Path) -> Settings:
    """Start a scenario's stack on `redis_url` (default: a redis-server of its own, so nothing mixes with a running
    stack) and wait for its API; the stack's settings, with the Redis it uses."""
    redis_url = redis_url or own_redis(stack, home)
    stack.settings = settings = settings.model_copy(update={"REDIS_URL": redis_url})
    stack.env["MHOGO_REDIS_URL"] = redis_url
    stack.start(explicit_redis_url=True)
    if not wait_until_healthy(settings.public_url):
        raise RuntimeError("the API did not become healthy")
    return settings


def _drive(
    stack: Stack, settings: Settings, engine: Any, parts: dict[str, list[Photo]], timeline: Timeline,
    config: ScenarioConfig,
) -> dict[str, Any]:  # fmt: skip
    with Session(engine) as session:
        _, token = add_device(session, "scenario phone")
    client = redis.Redis.from_url(stack.env["MHOGO_REDIS_URL"])
    try:
        # Every result is awaited and timed on the timeline: look at each job every two seconds at most.
        with open_phone(config.home / "phone", settings.public_url, token, poll_cap_s=2.0) as phone:
            return _exercise(client, phone, settings, engine, parts, timeline, config)
    finally:
        client.close()


def _exercise(
    client: redis.Redis, phone: Phone, settings: Settings, engine: Any, parts: dict[str, list[Photo]],
    timeline: Timeline, config: ScenarioConfig,
) -> dict[str, Any]:  # fmt: skip
    truth: dict[str, Photo] = {}  # each photo's key in the phone's outbox, and what the photo shows

    def take(photo: Photo) -> str:
        key = phone.outbox.take(photo.path, as_is=True).key  # as it is: the retraining learns from these very bytes
        truth[key] = photo
        return key

    for photo in parts["stream"]:
        take(photo)
    timeline.mark("stream photos taken", photos=len(truth))
    results = {done.key: done.result for done in phone.sync(timeout_s=600) if done.result}
    served = Counter(body["result"]["model_version"] for body in results.values() if body.get("result"))
    classified = [key for key, body in results.items() if body["status"] == "classified" and truth[key].label]
    right = sum(results[key]["result"]["label"] == truth[key].label for key in classified)
    timeline.mark("first results stored", results=len(results), served_by=dict(served),
                  correct=f"{right}/{len(classified)}", phone_told_to_wait=dict(phone.told_to_wait))  # fmt: skip
    # An agronomist's label comes from the agronomist, never from a device token (the API refuses that): until
    # agronomists have accounts, they go as core.feedback makes them, with who gave them, onto the events queue, one
    # after another as fast as Redis takes them, so both aggregation workers take them at once.
    labels = [agronomist_label(str(phone.outbox.get(key).job_id), str(truth[key].label), AGRONOMIST)
              for key in classified]  # fmt: skip
    publisher = publisher_for(settings.REDIS_URL, resolve(engine, None))
    try:
        for event in labels:
            publisher.publish_feedback(event)
    finally:
        publisher.app.close()
    timeline.mark("agronomists' labels sent", feedback=len(labels), by=AGRONOMIST)

    def run_row() -> RetrainRun | None:
        with Session(engine) as session:
            return session.exec(select(RetrainRun).order_by(col(RetrainRun.id))).first()

    run = wait_for(run_row, 120)
    if run is None:
        raise RuntimeError("no rule fired: see `mhogo status`")
    timeline.mark("rule fired", rule=run.rule, figures=run.figures, run=run.id, by=run.fired_by)
    stop = threading.Event()
    streamed: list[str] = []

    def keep_sending() -> None:  # photos keep arriving while the challenger trains and takes over
        while not stop.is_set():  # the phone is this thread's until it stops
            streamed.append(take(parts["stream"][len(streamed) % len(parts["stream"])]))
            phone.step()
            stop.wait(config.stream_during_retraining_s)

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()

    def started_run() -> RetrainRun | None:
        row = run_row()
        return row if row is not None and row.started_at is not None else None

    def finished_run() -> RetrainRun | None:
        row = run_row()
        return row if row is not None and not RetrainStatus(row.status).open else None

    if wait_for(started_run, 600) is not None:
        timeline.mark("retraining started", run=run.id)
    finished = wait_for(finished_run, 3600)
    if finished is None:
        stop.set()
        raise RuntimeError("the retraining run did not finish within an hour")
    evaluation = {who: finished.evaluation.get(who, {}).get("pooled", {}) for who in ("champion", "challenger")}
    timeline.mark("retraining done", status=str(finished.status), challenger=finished.challenger_version,
                  accuracy={who: e.get("accuracy") for who, e in evaluation.items()}, decision=finished.decision,
                  dataset={k: v for k, v in finished.dataset.items() if not k.endswith("_dir")})  # fmt: skip
    new_version = finished.challenger_version if finished.status == RetrainStatus.PROMOTED else None
    if new_version is None and config.promote_kept and finished.challenger_version is not None:
        new_version = _promote_by_hand(settings, engine, finished.challenger_version, f"run {finished.id} kept it")
        timeline.mark("an operator promoted the kept challenger", version=new_version)
    if new_version is not None:
        first_new = wait_for(lambda: _first_result_of(engine, new_version), 120)
        timeline.mark("new champion serving", version=new_version, first_job=first_new)
        # A few photos uploaded once every worker has looked for the new champion (as checked below), however
        # slowly a busy machine serves them: counted, not timed.
        with Session(engine) as session:
            switched = max(c.changed_at for c in registry.history(session, ModelAliasName.CHAMPION)
                           if c.version == new_version)  # fmt: skip
        settled_at = switched + timedelta(seconds=2 * settings.MODEL_REFRESH_S)

        def classified_since_settled() -> bool:
            with Session(engine) as session:
                found = session.exec(select(func.count()).select_from(Job).where(
                    col(Job.created_at) > settled_at, col(Job.status) == JobStatus.CLASSIFIED)).one()  # fmt: skip
            return int(found) >= 3

        wait_for(classified_since_settled, 300)
    stop.set()
    sender.join()
    timeline.mark("stream stopped", photos_during_retraining=len(streamed))
    phone.flush(timeout_s=300)
    taken = phone.outbox.photos()
    all_jobs = [photo.job_id for photo in taken if photo.job_id]
    with Session(engine) as session:
        runs = session.exec(select(RetrainRun)).all()
        rows = session.exec(select(Job).where(col(Job.id).in_(all_jobs))).all()
        aliases = registry.aliases(session)
        switch = next((c for c in registry.history(session, ModelAliasName.CHAMPION) if c.version == new_version), None)
    versions = Counter(row.model_version for row in rows if row.status == JobStatus.CLASSIFIED)
    # Jobs uploaded once every worker has looked for the new champion must all carry it.
    settled = switch.changed_at + timedelta(seconds=2 * settings.MODEL_REFRESH_S) if switch else None
    after = [row for row in rows if settled and row.created_at > settled and row.status == JobStatus.CLASSIFIED]
    reached_model = sum(1 for row in rows if row.model_version is not None)
    namespace = resolve(engine, None)
    counters = {(name, labels.get("task"), labels.get("state")): v
                for name, labels, v in telemetry.read(client, namespace)}  # fmt: skip
    classify = ("mhogo_tasks_total", TaskName.DIAGNOSE.value, "success")
    classify_runs = sum(v for key, v in counters.items() if key == classify)
    checks = {
        "uploads": len(taken),  # every photo the phone took: each must have made one job and got one result
        "jobs": len(rows),
        "finished": sum(photo.finished for photo in taken),
        "failed": sum(row.status == JobStatus.FAILED for row in rows),
        "retraining_runs": len(runs),
        "classified_by_version": dict(versions),
        "jobs_that_reached_the_model": reached_model,
        "classify_tasks_succeeded": int(classify_runs),
        "champion": aliases.get("champion"),
        "uploaded_after_the_switch": len(after),
        "of_them_served_by_the_old_champion": sum(row.model_version != new_version for row in after),
        "phone_told_to_wait": {str(code): n for code, n in phone.told_to_wait.items()},  # 429 and 503, by status
    }
    times = {"fired": finished.fired_at, "started": finished.started_at, "finished": finished.finished_at,
             "promoted": switch.changed_at if switch else None,
             "first_result_of_the_new_champion": min((r.finished_at for r in rows if r.finished_at
                                                      and new_version and r.model_version == new_version),
                                                     default=None)}  # fmt: skip
    checks["times"] = {key: value.isoformat() if value else None for key, value in times.items()}
    timeline.mark("all results in", **checks)
    with Session(engine) as session:
        learned_from = registry.get_version(session, finished.challenger_version).dataset_version \
            if finished.challenger_version else None  # fmt: skip
    return {"run": {"id": finished.id, "rule": finished.rule, "figures": finished.figures,
                    "dataset_version": finished.dataset_version, "challenger_dataset_version": learned_from,
                    "status": str(finished.status), "decision": finished.decision,
                    "evaluation": finished.evaluation, "dataset": finished.dataset,
                    "champion": finished.champion_version, "challenger": finished.challenger_version},
            "checks": checks, "dashboard": f"{settings.public_url}/ops"}  # fmt: skip


def _promote_by_hand(settings: Settings, engine: Any, version: str, why: str) -> str:
    """What `mhogo models promote VERSION` does: its serving build first, then the champion alias."""
    from core.blobs import BlobStore
    from core.serving import prepare_for_serving

    with Session(engine) as session:
        prepare_for_serving(settings, BlobStore(settings.blob_dir), registry.get_version(session, version))
        registry.promote(session, version, "scenario operator", f"promoted by hand: {why}")
    return version


def publisher_for(redis_url: str, namespace: Namespace) -> Publisher:
    """A publisher onto the scenario's own broker, in its deployment's namespace (the one Celery app of this process
    points at another broker, or is bound to another deployment)."""
    from celery import Celery

    app = Celery("mhogo-scenario", set_as_current=False)
    app.config_from_object("core.celery_config")
    app.conf.broker_url = redis_url
    bind(app, namespace)
    return Publisher(app)


def own_redis(stack: Stack, home: Path) -> str:
    port = free_port()
    stack.spawn("redis", embedded_redis_command(port, home / "redis"))
    url = f"redis://127.0.0.1:{port}/0"
    if wait_for(lambda: redis_answers(url), 10) is None:
        raise RuntimeError("the scenario's redis-server did not start")
    return url


def _first_result_of(engine: Any, version: str) -> str | None:
    with Session(engine) as session:
        statement = select(Job.id).where(col(Job.model_version) == version).order_by(col(Job.finished_at)).limit(1)
        return session.exec(statement).first()


def wait_for(check: Callable[[], T | None], timeout_s: float) -> T | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    return None

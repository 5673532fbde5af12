"""`mhogo scenario review`: what the review queue is worth to an agronomist's hour, on the real stack.

A champion trained on part of the photos serves (mhogo.scenario's split: holdout, base, stream); the stream arrives
from a phone and is diagnosed; farmers answer some diagnoses through the phone (most catch a wrong answer, a few
contradict a right one, some confirm); the queue ranks the photos; simulated agronomists, each with an account and
an API token, work it through the review API exactly as the workbench page does (next, answer), each label costing
`label_s` of their time, double-labelled items and adjudications included. A photo's label *matters* when the
model's answer on it was wrong (the label corrects a mistake), a farmer contested it, or the model was unsure (margin
between its top two classes below MHOGO_REVIEW_UNSURE_MARGIN). The figure: labels that matter per agronomist-hour,
through the queue and, for the same team at the same pace, labelling the photos in upload order (single labels, no
adjudication: the generous baseline). Then a snapshot freezes the labelled set and an operator's retraining run
learns from it; the run must record that dataset version.

Prints its timeline; writes every figure to HOME/review-scenario.json and the cumulative curves to
HOME/review-scenario.png.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlmodel import Session, col, select

from core.config import Settings
from core.db import open_database
from core.devices import add_device
from core.namespace import resolve
from core.review import margin
from mhogo.scenario import (
    SCENARIO_SERVICES,
    Photo,
    ScenarioConfig,
    Timeline,
    publisher_for,
    scenario_env,
    split_data,
    start_stack,
    train_champion,
    wait_for,
)
from mhogo.stack import Stack
from producers.phone import Phone, open_phone
from schemas.labels import LABELS
from schemas.statuses import JobStatus
from schemas.tables import Job, RetrainRun, RetrainStatus, Role, utcnow

CLASSES = [label.value for label in LABELS]
NOT_CASSAVA = "not_cassava"


@dataclass
class ReviewScenarioConfig:
    data: Path
    home: Path
    quick: bool = False  # two batches a model: checks the path, not the models
    agronomists: int = 3
    label_s: float = 20.0  # an agronomist's time per label, simulated
    farmer_catches: float = 0.7  # of the wrong answers, the share a farmer contests (with the right class)
    farmer_contradicts: float = 0.05  # of the right answers, the share a farmer wrongly contests
    farmer_confirms: float = 0.3  # of the right answers, the share a farmer confirms
    agronomist_error: float = 0.05  # the share of an agronomist's labels that are wrong (so agreement is not 1)
    double_share: float = 0.2  # MHOGO_REVIEW_DOUBLE_SHARE
    retrain: bool = True
    seed: int = 7
    redis_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    """One label an agronomist gave through the API, at a simulated time."""

    t_s: float
    agronomist: str
    item_id: int
    job_id: str | None
    label: str
    adjudication: bool
    reasons: list[str]


def truth_of(photo: Photo) -> str:
    return photo.label or NOT_CASSAVA


def model_answer(job: Job) -> str:
    """What the model said of the photo, as an agronomist's answer would say it."""
    if job.status == JobStatus.CLASSIFIED and job.label:
        return job.label
    return NOT_CASSAVA if job.reason_code == "not_a_leaf" else "unusable"


def matters(job: Job, truth: str, contested: bool, unsure_margin: float) -> bool:
    """Whether a label on this photo teaches something: the model was wrong, a farmer contested it, or it was unsure."""
    wrong = model_answer(job) != truth and model_answer(job) != "unusable"
    gap = margin(job.probabilities) if job.status == JobStatus.CLASSIFIED else None
    unsure = gap is not None and gap < unsure_margin  # as the queue decides it (core.review.margin)
    return wrong or contested or unsure


def run_review_scenario(
    config: ReviewScenarioConfig, settings: Settings, out: Callable[[str], None] = print
) -> dict[str, Any]:
    config.home.mkdir(parents=True, exist_ok=True)
    timeline = Timeline(out=out)
    parts = split_data(config.data, config.home / "data")
    timeline.mark("data split", **{name: len(photos) for name, photos in parts.items()})
    base = ScenarioConfig(config.data, config.home, quick=config.quick, redis_url=config.redis_url)
    champion_path = config.home / "champion.pt"
    env = (
        scenario_env(base, champion_path)
        | {
            "MHOGO_AUTO_RETRAIN": "false",  # the operator fires the run, on the snapshot, when the queue is worked
            "MHOGO_REVIEW_DOUBLE_SHARE": str(config.double_share),
            "MHOGO_FLOWER_PASSWORD": "scenario-operator",
        }
        | config.extra_env
    )
    threads = int(env["MHOGO_RETRAIN_TORCH_THREADS"])
    champion = train_champion(config.home / "data" / "base", champion_path, base, settings, threads)
    timeline.mark("champion trained on the base part", version=champion)
    live = Settings(**{k.removeprefix("MHOGO_"): v for k, v in env.items()})  # type: ignore[arg-type]
    engine = open_database(live.database_url)
    stack = Stack(live, services=SCENARIO_SERVICES, out=sys.stdout)
    stack.env |= env | {"MHOGO_LOG_LEVEL": "WARNING"}
    report: dict[str, Any] = {"home": str(config.home), "quick": config.quick, "config": _public(config)}
    try:
        live = start_stack(stack, live, config.redis_url, config.home)
        report |= _drive(live, engine, parts["stream"], timeline, config)
    finally:
        stack.stop()
    report["timeline"] = timeline.events
    (config.home / "review-scenario.json").write_text(json.dumps(report, indent=2, default=str))
    draw(report, config.home / "review-scenario.png")
    return report


def _public(config: ReviewScenarioConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items() if k != "extra_env"}


def _drive(
    live: Settings, engine: Any, stream: list[Photo], timeline: Timeline, config: ReviewScenarioConfig
) -> dict[str, Any]:
    rng = random.Random(config.seed)
    with Session(engine) as session:
        _, token = add_device(session, "scenario farmers' phone")
    with open_phone(config.home / "phone", live.public_url, token, poll_cap_s=2.0) as phone:
        truth = {phone.outbox.take(photo.path, as_is=True).key: photo for photo in stream}
        phone.flush(timeout_s=600)
        jobs = _jobs(engine, phone, truth)
        timeline.mark("stream diagnosed", photos=len(truth), jobs=len(jobs))
        contested = _farmers_answer(phone, jobs, rng, config)
        phone.flush(timeout_s=300)
    timeline.mark("farmers answered", contested=len(contested))
    _refresh_queue(live, engine, timeline)
    users = _agronomists(engine, config.agronomists)
    answers = work_the_queue(live.public_url, users, jobs, rng, config)
    timeline.mark("queue worked", labels=len(answers), agronomist_hours=round(_hours(answers, config), 2))
    figures = compare(answers, jobs, contested, config, live.REVIEW_UNSURE_MARGIN)
    timeline.mark("labels that matter per agronomist-hour", **{k: v for k, v in figures.items() if k != "curves"})
    report: dict[str, Any] = {"figures": figures, "agreement": _agreement(engine)}
    if config.retrain:
        report["dataset"] = _snapshot_and_retrain(live, engine, timeline)
    return report


def _jobs(engine: Any, phone: Phone, truth: dict[str, Photo]) -> dict[str, tuple[Job, str]]:
    """Every stream photo's job, in upload order, with what the photo really shows."""
    keyed = {photo.job_id: truth[photo.key] for photo in phone.outbox.photos() if photo.job_id}
    with Session(engine) as session:
        rows = session.exec(select(Job).where(col(Job.id).in_(list(keyed))).order_by(col(Job.created_at))).all()
    return {row.id: (row, truth_of(keyed[row.id])) for row in rows if row.status in (JobStatus.CLASSIFIED,
                                                                                     JobStatus.REJECTED)}  # fmt: skip


def _farmers_answer(
    phone: Phone, jobs: dict[str, tuple[Job, str]], rng: random.Random, config: ReviewScenarioConfig
) -> set[str]:
    """Farmers answer diagnoses through the phone: the job ids they contested."""
    keys = {photo.job_id: photo.key for photo in phone.outbox.photos() if photo.job_id}
    contested = set()
    for job_id, (job, truth) in jobs.items():
        if job.status != JobStatus.CLASSIFIED or truth == NOT_CASSAVA:
            continue
        said = None
        if job.label != truth and rng.random() < config.farmer_catches:
            said = truth
        elif job.label == truth and rng.random() < config.farmer_contradicts:
            said = rng.choice([c for c in CLASSES if c != truth])
        elif job.label == truth and rng.random() < config.farmer_confirms:
            said = truth
        if said is not None:
            phone.outbox.add_feedback(keys[job_id], said)
            if said != job.label:
                contested.add(job_id)
    return contested


def _refresh_queue(live: Settings, engine: Any, timeline: Timeline) -> None:
    """The events workers refresh the queue on their tick; the scenario does not wait for one."""
    from core.review import refresh

    with Session(engine) as session:
        added = refresh(session, live)
    timeline.mark("review queue refreshed", items=added)


def _agronomists(engine: Any, n: int) -> list[tuple[str, str]]:
    from core.users import add_user, issue_token

    people = []
    with Session(engine) as session:
        for i in range(n):
            name = f"agronomist-{i + 1}"
            user = add_user(session, name, Role.AGRONOMIST, f"scenario password {i} {utcnow().timestamp()}")
            people.append((name, issue_token(session, user)))
    return people


def work_the_queue(
    api_url: str, users: list[tuple[str, str]], jobs: dict[str, tuple[Job, str]], rng: random.Random,
    config: ReviewScenarioConfig,
) -> list[Answer]:  # fmt: skip
    """Each agronomist asks for their next item and answers it, the one whose simulated clock is earliest first,
    until the queue has nothing left for anyone."""
    clocks = {name: 0.0 for name, _ in users}
    done: set[str] = set()
    answers: list[Answer] = []
    clients = {name: httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
               for name, token in users}  # fmt: skip
    try:
        while len(done) < len(users):
            name = min((n for n in clocks if n not in done), key=lambda n: clocks[n])
            client = clients[name]
            response = client.get("/v1/review/next")
            if response.status_code == 204:
                done.add(name)
                continue
            response.raise_for_status()
            item = response.json()
            truth = jobs[item["job_id"]][1] if item.get("job_id") in jobs else None
            label = truth or "unusable"
            if rng.random() < config.agronomist_error:
                label = rng.choice([c for c in (*CLASSES, NOT_CASSAVA) if c != label])
            client.post(f"/v1/review/{item['item_id']}", json={"label": label}).raise_for_status()
            clocks[name] += config.label_s
            answers.append(Answer(clocks[name], name, item["item_id"], item.get("job_id"), label,
                                  bool(item.get("adjudication")), [r["code"] for r in item["reasons"]]))  # fmt: skip
    finally:
        for client in clients.values():
            client.close()
    return sorted(answers, key=lambda answer: answer.t_s)


def _hours(answers: list[Answer], config: ReviewScenarioConfig) -> float:
    """Agronomist-hours spent: every label costs `label_s` of someone's time."""
    return len(answers) * config.label_s / 3600


def compare(
    answers: list[Answer], jobs: dict[str, tuple[Job, str]], contested: set[str], config: ReviewScenarioConfig,
    unsure_margin: float,
) -> dict[str, Any]:  # fmt: skip
    """Labels that matter per agronomist-hour through the queue, and in upload order for the same time."""
    mattering = {job_id for job_id, (job, truth) in jobs.items() if matters(job, truth, job_id in contested,
                                                                            unsure_margin)}  # fmt: skip
    queue_curve, seen = [], set()
    for answer in answers:  # a photo's first label is the one that brings it; its second checks it
        if answer.job_id in mattering and answer.job_id not in seen:
            seen.add(answer.job_id)
        queue_curve.append(len(seen))
    upload_order = list(jobs)
    base_curve = [sum(job_id in mattering for job_id in upload_order[: n + 1]) for n in range(len(answers))]
    hours = max(_hours(answers, config), 1e-9)
    queue_rate, base_rate = queue_curve[-1] / hours if answers else 0.0, (base_curve[-1] if answers else 0) / hours
    upload_curve = [sum(job_id in mattering for job_id in upload_order[: n + 1]) for n in range(len(upload_order))]
    found = queue_curve[-1] if answers else 0
    return {
        "to_every_one_the_queue_finds": time_to(queue_curve, upload_curve, found, config),
        "to_80_percent": time_to(queue_curve, upload_curve, math.ceil(0.8 * found), config),
        "photos": len(jobs), "photos_that_matter": len(mattering), "labels": len(answers),
        "agronomist_hours": round(hours, 3),
        "queue_labels_that_matter": queue_curve[-1] if answers else 0,
        "upload_order_labels_that_matter": base_curve[-1] if answers else 0,
        "queue_per_hour": round(queue_rate, 1), "upload_order_per_hour": round(base_rate, 1),
        "ratio": round(queue_rate / base_rate, 2) if base_rate else None,
        "curves": {"label_s": config.label_s, "queue": queue_curve, "upload_order": base_curve},
    }  # fmt: skip


def time_to(queue: list[int], upload: list[int], target: int, config: ReviewScenarioConfig) -> dict[str, Any]:
    """Agronomist-hours until `target` photos that matter are labelled: through the queue, and in upload order."""
    if target <= 0:
        return {"photos": 0}
    through_queue = next((n + 1 for n, found in enumerate(queue) if found >= target), None)
    in_order = next((n + 1 for n, found in enumerate(upload) if found >= target), None)
    hours = {name: None if labels is None else round(labels * config.label_s / 3600, 3)
             for name, labels in (("queue", through_queue), ("upload_order", in_order))}  # fmt: skip
    ratio = round(in_order / through_queue, 2) if in_order and through_queue else None
    return {"photos": target, "labels": {"queue": through_queue, "upload_order": in_order},
            "agronomist_hours": hours, "upload_order_takes_times_longer": ratio}  # fmt: skip


def _agreement(engine: Any) -> dict[str, Any]:
    from core.agreement import agreement

    with Session(engine) as session:
        return agreement(session)


def _snapshot_and_retrain(live: Settings, engine: Any, timeline: Timeline) -> dict[str, Any]:
    from core.blobs import BlobStore
    from core.datasets import snapshot
    from core.labels import import_curated
    from core.triggers import Firing, fire

    blobs = BlobStore(live.blob_dir)
    with Session(engine, expire_on_commit=False) as session:
        if live.TRAIN_DATA_DIR is not None:  # the base part, as curated labels: the version holds it and the queue's
            import_curated(session, blobs, live.TRAIN_DATA_DIR)
        version = snapshot(session, blobs, live, "scenario operator")
    timeline.mark("dataset snapshot", version=version.id, photos=version.photos, counts=version.counts)
    client = redis.Redis.from_url(live.REDIS_URL)
    namespace = resolve(engine, None)
    publisher = publisher_for(live.REDIS_URL, namespace)
    try:
        with Session(engine) as session:
            firing = Firing("operator", {"reason": "the queue was worked", "dataset_version": version.id})
            run = fire(session, client, namespace, publisher.publish_retrain, firing, "scenario operator",
                       timedelta(0), utcnow())  # fmt: skip
    finally:
        publisher.app.close()
        client.close()
    if run is None or run.id is None:
        raise RuntimeError("the retraining run was not fired: another run is open")
    run_id = run.id

    def finished() -> RetrainRun | None:
        with Session(engine) as session:
            row = session.get(RetrainRun, run_id)
        return row if row is not None and not RetrainStatus(row.status).open else None

    done = wait_for(finished, 3600)
    if done is None:
        raise RuntimeError("the retraining run did not finish within an hour")
    timeline.mark("retraining done", status=str(done.status), dataset_version=done.dataset_version,
                  decision=done.decision)  # fmt: skip
    return {"snapshot": version.id, "photos": version.photos, "counts": version.counts,
            "run": {"id": done.id, "status": str(done.status), "dataset_version": done.dataset_version,
                    "challenger": done.challenger_version, "decision": done.decision}}  # fmt: skip


def draw(report: dict[str, Any], path: Path) -> Path | None:
    """Labels that matter against agronomist-hours, the queue against upload order."""
    curves = report.get("figures", {}).get("curves")
    if not curves or not curves["queue"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [(i + 1) * curves["label_s"] / 3600 for i in range(len(curves["queue"]))]
    figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
    axes.plot(hours, curves["queue"], label="the review queue", color="#2e7d32", linewidth=2)
    axes.plot(hours, curves["upload_order"], label="upload order", color="#9e9e9e", linewidth=2, linestyle="--")
    axes.set_xlabel("agronomist-hours")
    axes.set_ylabel("photos that matter, labelled")
    axes.set_title("Labels that matter: the queue against upload order")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path

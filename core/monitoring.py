"""The aggregation tick: figures over rolling windows, per model version, written to the database as a time series
(`metric_points`). The dashboard, `mhogo status`, `/metrics` and the trigger rules all read them from there.

What one tick writes (name / key):
    photos_per_minute / "" and each status       jobs finished per minute over the last five minutes
    rejection_rate / each reason code and "all"  share of the window's finished jobs turned away
    failure_rate / ""                            share of the window's finished jobs that failed
    latency_ms / "<stage>:p50|p95|p99"           per stage and end to end (upload accepted -> result stored)
    queue_length / each queue and "in_flight"    messages waiting, and taken but not yet acknowledged
    accuracy, macro_f1, ece, labelled / source   per model version, over its last N photos labelled by the source:
                                                 "agronomist", "farmer" or "trusted" (see core.feedback); no device
                                                 behind more than MAX_DEVICE_SHARE of a farmer or trusted figure,
                                                 as for the trigger rules, so one phone cannot move what operators
                                                 decide on (an agronomist's label rests on no device)
    confusion / "<true>><predicted>"             per model version, trusted labels
    drift_psi / each image statistic, "max",     the champion's training photos against the window's photos
                "class_mix"                      (ml.drift)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import redis
from sqlalchemy import func
from sqlmodel import Session, col, select

from core import registry
from core.config import Settings
from core.feedback import LabelledPhoto, Source, recent_labels
from core.namespace import Namespace
from ml.drift import drift_scores
from schemas.labels import LABELS
from schemas.queues import QueueName
from schemas.statuses import JobStatus
from schemas.tables import Feedback, Job, MetricPoint, ModelAliasName, ModelVersion

log = logging.getLogger(__name__)

CLASSES = [label.value for label in LABELS]
PERCENTILES = (50, 95, 99)
SOURCES: tuple[Source, ...] = ("trusted", "agronomist", "farmer")
RATE_WINDOW = timedelta(minutes=5)
MAX_JOBS_PER_TICK = 5000  # percentiles and drift over the window's latest jobs, at most this many


def point(at: datetime, name: str, value: float, key: str = "", version: str | None = None) -> MetricPoint:
    return MetricPoint(at=at, name=name, key=key, model_version=version, value=round(float(value), 6))


def job_figures(session: Session, now: datetime, window: timedelta) -> list[MetricPoint]:
    since = now - window
    points = []
    recent = session.exec(
        select(Job.status, func.count()).where(col(Job.finished_at) >= now - RATE_WINDOW).group_by(col(Job.status))
    ).all()
    minutes = RATE_WINDOW.total_seconds() / 60
    points.append(point(now, "photos_per_minute", sum(n for _, n in recent) / minutes))
    points += [point(now, "photos_per_minute", n / minutes, str(status)) for status, n in recent]
    by_status = dict(
        session.exec(
            select(Job.status, func.count()).where(col(Job.finished_at) >= since).group_by(col(Job.status))
        ).all()
    )
    finished = sum(by_status.values())
    if finished:
        reasons = session.exec(
            select(Job.reason_code, func.count())
            .where(col(Job.finished_at) >= since, col(Job.status) == JobStatus.REJECTED.value)
            .group_by(col(Job.reason_code))
        ).all()
        points += [point(now, "rejection_rate", n / finished, str(reason)) for reason, n in reasons]
        points.append(point(now, "rejection_rate", by_status.get(JobStatus.REJECTED, 0) / finished, "all"))
        points.append(point(now, "failure_rate", by_status.get(JobStatus.FAILED, 0) / finished))
    return points


def recent_jobs(session: Session, now: datetime, window: timedelta) -> Sequence[Job]:
    statement = (
        select(Job)
        .where(col(Job.finished_at) >= now - window, col(Job.status) != JobStatus.FAILED.value)
        .order_by(col(Job.finished_at).desc())
        .limit(MAX_JOBS_PER_TICK)
    )
    return session.exec(statement).all()


def latency_figures(now: datetime, jobs: Sequence[Job]) -> list[MetricPoint]:
    stages: dict[str, list[float]] = {}
    for job in jobs:
        for stage, ms in (job.timings_ms or {}).items():
            stages.setdefault(stage, []).append(ms)
        if job.finished_at is not None:
            stages.setdefault("end_to_end", []).append((job.finished_at - job.created_at).total_seconds() * 1000)
    points = []
    for stage, values in sorted(stages.items()):
        for q, value in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
            points.append(point(now, "latency_ms", value, f"{stage}:p{q}"))
    return points


def drift_figures(
    now: datetime, jobs: Sequence[Job], champion: ModelVersion | None, min_photos: int
) -> list[MetricPoint]:
    """The champion's photos of the window against its training photos; nothing without a reference (models
    trained before references were recorded) or with too few photos to tell."""
    ref = champion.metrics.get("input_reference") if champion is not None else None
    if not ref or champion is None:
        return []
    # The photos the champion answered on: what the gates turned away is counted by the rejection rates, and a
    # flood of banana leaves is not a reason to retrain the cassava model.
    served = [job for job in jobs if job.input_stats and job.label and job.model_version == champion.version]
    if len(served) < min_photos:
        return []
    stats = [job.input_stats for job in served if job.input_stats]
    predicted = [job.label for job in served if job.label]
    scores = drift_scores(ref, stats, predicted)
    return [point(now, "drift_psi", value, key, champion.version) for key, value in scores.items()]


def queue_figures(client: redis.Redis, namespace: Namespace, now: datetime) -> list[MetricPoint]:
    """Messages waiting in each of the deployment's queues (kombu's Redis transport keeps a queue as a list, named
    with the namespace's prefix) and messages its workers took but did not acknowledge yet."""
    pipe = client.pipeline(transaction=False)
    for queue in QueueName:
        pipe.llen(namespace.queue(queue.value))
    pipe.hlen(namespace.unacked)
    *lengths, in_flight = pipe.execute()
    points = [point(now, "queue_length", n, queue.value) for queue, n in zip(QueueName, lengths, strict=True)]
    return [*points, point(now, "queue_length", in_flight, "in_flight")]


def feedback_figures(
    by_source: Mapping[Source, Iterable[LabelledPhoto]], version: str, now: datetime
) -> list[MetricPoint]:
    import torch

    from ml.metrics import expected_calibration_error, summarize

    points = []
    for source in SOURCES:
        photos = by_source.get(source, ())
        rows = [(photo, label) for photo in photos if (label := photo.label_from(source)) in CLASSES]
        rows = [(photo, label) for photo, label in rows if photo.predicted in CLASSES]
        if not rows:
            continue
        targets = torch.tensor([CLASSES.index(label) for _, label in rows])
        predictions = torch.tensor([CLASSES.index(photo.predicted) for photo, _ in rows])
        summary = summarize(targets, predictions, CLASSES)
        correct = (targets == predictions).float()
        confidences = torch.tensor([photo.confidence for photo, _ in rows])
        points += [
            point(now, "labelled", len(rows), source, version),
            point(now, "accuracy", summary["accuracy"], source, version),
            point(now, "macro_f1", summary["macro_f1"], source, version),
            point(now, "ece", expected_calibration_error(confidences, correct), source, version),
        ]
        if source == "trusted":
            pairs = Counter((label, photo.predicted) for photo, label in rows)
            points += [point(now, "confusion", n, f"{t}>{p}", version) for (t, p), n in sorted(pairs.items())]
    return points


def versions_with_feedback(session: Session, since: datetime) -> list[str]:
    statement = select(Feedback.model_version).where(col(Feedback.created_at) >= since).distinct()
    return [version for version in session.exec(statement).all() if version]


def tick(
    session: Session, client: redis.Redis, namespace: Namespace, config: Settings, now: datetime
) -> list[MetricPoint]:
    """Compute one tick of figures and store them (retention drops them after MHOGO_METRICS_RETENTION_DAYS, a batch
    at a time: core.retention)."""
    window = timedelta(seconds=config.METRICS_WINDOW_S)
    champion_version = registry.alias_version(session, ModelAliasName.CHAMPION)
    champion = session.get(ModelVersion, champion_version) if champion_version else None
    jobs = recent_jobs(session, now, window)
    points = job_figures(session, now, window) + latency_figures(now, jobs)
    points += drift_figures(now, jobs, champion, config.DRIFT_MIN_PHOTOS)
    points += queue_figures(client, namespace, now)
    versions = set(versions_with_feedback(session, now - window)) | ({champion_version} if champion_version else set())
    n = config.METRICS_FEEDBACK_LAST_N
    for version in sorted(versions):
        by_source = {source: recent_labels(session, config, source, n, version) for source in SOURCES}
        points += feedback_figures(by_source, version, now)
    session.add_all(points)
    session.commit()
    return points


def series(
    session: Session, name: str, since: datetime, key: str | None = None, version: str | None = None
) -> list[MetricPoint]:
    """One metric's points since a time, oldest first; of one key and one model version if given."""
    statement = select(MetricPoint).where(col(MetricPoint.name) == name, col(MetricPoint.at) >= since)
    if key is not None:
        statement = statement.where(col(MetricPoint.key) == key)
    if version is not None:
        statement = statement.where(col(MetricPoint.model_version) == version)
    return list(session.exec(statement.order_by(col(MetricPoint.at), col(MetricPoint.id))).all())


def latest(session: Session, since: datetime) -> list[MetricPoint]:
    """The last tick's points (the newest point of every name, key and version seen since `since`)."""
    newest: dict[tuple[str, str, str | None], MetricPoint] = {}
    statement = select(MetricPoint).where(col(MetricPoint.at) >= since).order_by(col(MetricPoint.at))
    for row in session.exec(statement).all():
        newest[(row.name, row.key, row.model_version)] = row
    return list(newest.values())


def summary(points: Iterable[MetricPoint]) -> dict[str, Any]:
    """Points as nested JSON: {name: {key or "value": value}} and per-version figures under "versions"."""
    out: dict[str, Any] = {}
    for row in points:
        target = out.setdefault("versions", {}).setdefault(row.model_version, {}) if row.model_version else out
        target.setdefault(row.name, {})[row.key or "value"] = row.value
    return out

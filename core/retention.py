"""Retention: nothing mhogo stores grows without bound. One pass deletes, of each kind below, at most
MHOGO_RETENTION_BATCH things past their time, each kind in its own short transaction; beat sends a pass every
MHOGO_RETENTION_INTERVAL_S to the events queue (workers/events.py, under a Redis lock), and a pass that filled a batch
sends the next one at once. Every step is a conditional statement, or a file that may be gone already, so a pass
repeated, cut short or run by two processes at once deletes nothing twice and nothing the rules keep.

What goes, and when (README "Retention"):
    photos          the photo of a finished job, PHOTO_RETENTION_DAYS after its upload, unless feedback gives it a
                    trusted label (core.feedback.trusted_jobs: training data). The job stays as a tombstone, its
                    diagnosis readable, `photo_deleted_at` set; the file goes once no job keeping its photo shares it
                    (photos are stored by content: two uploads of the same bytes are one file).
    jobs            a finished job JOB_RETENTION_DAYS after its upload, with its feedback (and its photo if that had not
                    gone yet), unless it has a trusted label: feedback lives as long as its job, since deleting part
                    of it could change the label the rest gives.
    client events   CLIENT_EVENT_RETENTION_DAYS after the server received them
    metric points   METRICS_RETENTION_DAYS after their tick
    challengers     the checkpoint and serving builds of a version that never was champion and is not the challenger
                    now, CHALLENGER_RETENTION_DAYS after it was registered; its row stays (what was tried, how it did)
    run files       MHOGO_HOME/models/run-N (a run's dataset: links to the base data, copies of feedback photos) and
                    challenger-runN.pt (a copy of the registered checkpoint), RUN_FILES_RETENTION_DAYS after the run
                    finished; links are removed, never what they point to
    part files      files of resumable uploads' parts that no upload names, uploads.ORPHAN_AFTER after they were
                    written: a crash between writing a part and recording it (core.uploads.orphan_parts)
    counters        phone-event counters of kinds that are not ClientEventKind (an older release let any kind in)

Kept whatever their age: photos with trusted labels, their jobs and feedback; every version that ever served as
champion, with its artifact (audit, and rollback); the challenger; the frozen holdout (MHOGO_HOLDOUT_DIR) and the base
data (MHOGO_TRAIN_DATA_DIR), the operator's folders, which retention never opens. Resumable uploads, finished or not,
are dropped with their part files by the sweeper at MHOGO_UPLOAD_EXPIRE_S (core.uploads.remove_expired); photo
files no job refers to, by the sweeper too (core.orphans).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from core import telemetry, uploads
from core.blobs import BlobStore
from core.config import Settings
from core.feedback import trusted_jobs
from core.namespace import Namespace
from core.serving import BUILD_NAMESPACES, build_key
from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import (
    AliasChange,
    ClientEvent,
    Feedback,
    Job,
    MetricPoint,
    ModelAlias,
    ModelAliasName,
    ModelVersion,
    RetrainRun,
    RetrainStatus,
    UserSession,
)
from schemas.tasks import ClientEventKind

log = logging.getLogger(__name__)

JOBS = Job.__table__  # type: ignore[attr-defined]
PHOTOS_NAMESPACE = "photos/"
CLIENT_EVENTS_COUNTER = "mhogo_client_events_total"
RUN_FILE = re.compile(r"^(?:run-(\d+)|challenger-run(\d+)\.pt)$")
# What a pass deletes, in its order, each at most a batch: the counts that say whether more is waiting.
KINDS = ("photos", "jobs", "client_events", "metric_points", "challengers", "run_files", "part_files", "user_sessions")
KNOWN_KINDS = frozenset(kind.value for kind in ClientEventKind)


@dataclass(frozen=True)
class Cutoffs:
    """Before these times, each kind is past its retention."""

    photos: datetime
    jobs: datetime
    client_events: datetime
    metric_points: datetime
    challengers: datetime
    run_files: datetime

    @classmethod
    def of(cls, config: Settings, now: datetime) -> Cutoffs:
        def ago(days: float) -> datetime:
            return now - timedelta(days=days)

        return cls(ago(config.PHOTO_RETENTION_DAYS), ago(config.JOB_RETENTION_DAYS),
                   ago(config.CLIENT_EVENT_RETENTION_DAYS), ago(config.METRICS_RETENTION_DAYS),
                   ago(config.CHALLENGER_RETENTION_DAYS), ago(config.RUN_FILES_RETENTION_DAYS))  # fmt: skip


@dataclass
class Outcome:
    """What a pass deleted, counted by kind, and whether a batch was full (so more may be waiting)."""

    counts: Counter[str] = field(default_factory=Counter)
    more: bool = False


def describe(config: Settings) -> dict[str, str]:
    """Each count of the report, as `mhogo retention run` explains it."""
    return {
        "photos": f"photos of finished jobs uploaded over {config.PHOTO_RETENTION_DAYS:g} days ago, without a "
        "trusted label (their jobs stay, as tombstones)",
        "photo_files": "photo files no kept job shares",
        "photos_kept_labelled": "photos past their time kept: trusted labels, training data",
        "jobs": f"finished jobs uploaded over {config.JOB_RETENTION_DAYS:g} days ago, without a trusted label",
        "feedback": "feedback rows, with their jobs",
        "client_events": f"phone events received over {config.CLIENT_EVENT_RETENTION_DAYS:g} days ago",
        "metric_points": f"metric points over {config.METRICS_RETENTION_DAYS:g} days old",
        "challengers": f"models registered over {config.CHALLENGER_RETENTION_DAYS:g} days ago, never champion and "
        "not the challenger: checkpoint and builds deleted, row kept",
        "model_files": "checkpoint and build files of those models",
        "run_files": f"datasets and checkpoint copies of runs finished over {config.RUN_FILES_RETENTION_DAYS:g} "
        "days ago",
        "part_files": "files of resumable uploads' parts that no upload names (left by a crash), written over "
        f"{uploads.ORPHAN_AFTER.total_seconds() / 3600:g} h ago",
        "counters": "phone-event counters of unknown kinds",
        "bytes_freed": "bytes of files deleted",
        "errors": "files that could not be deleted (see the log)",
    }


def photo_candidates(cutoff: datetime, farmers_to_agree: int) -> SelectOfScalar[str]:
    """Jobs whose photo is past its time: finished, uploaded before `cutoff`, photo still there, no trusted label."""
    return (
        select(col(Job.id))
        .where(col(Job.status).in_([status.value for status in TERMINAL_STATUSES]), col(Job.created_at) < cutoff,
               col(Job.photo_deleted_at).is_(None), col(Job.id).not_in(trusted_jobs(farmers_to_agree)))
        .order_by(col(Job.created_at))
    )  # fmt: skip


def kept_labelled(cutoff: datetime, farmers_to_agree: int) -> SelectOfScalar[str]:
    """Photos past their time that stay: their trusted label makes them training data."""
    return select(col(Job.id)).where(col(Job.created_at) < cutoff, col(Job.photo_deleted_at).is_(None),
                                     col(Job.id).in_(trusted_jobs(farmers_to_agree)))  # fmt: skip


def job_candidates(cutoff: datetime, farmers_to_agree: int) -> SelectOfScalar[str]:
    """Finished jobs uploaded before `cutoff` without a trusted label (one keeping a label stays, its feedback too)."""
    return (
        select(col(Job.id))
        .where(col(Job.status).in_([status.value for status in TERMINAL_STATUSES]), col(Job.created_at) < cutoff,
               col(Job.id).not_in(trusted_jobs(farmers_to_agree)))
        .order_by(col(Job.created_at))
    )  # fmt: skip


def challenger_candidates(cutoff: datetime) -> SelectOfScalar[str]:
    """Versions registered before `cutoff` that never were champion, are no alias now, and still have artifacts."""
    champions = select(col(AliasChange.version)).where(col(AliasChange.alias) == ModelAliasName.CHAMPION.value)
    return (
        select(col(ModelVersion.version))
        .where(col(ModelVersion.artifact_deleted_at).is_(None), col(ModelVersion.created_at) < cutoff,
               col(ModelVersion.version).not_in(champions),
               col(ModelVersion.version).not_in(select(ModelAlias.version)))
        .order_by(col(ModelVersion.created_at))
    )  # fmt: skip


def _rows(session: Session, statement: Any) -> int:
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return int(result.rowcount)


def _remove_blob(blobs: BlobStore, key: str, counts: Counter[str], files: str) -> None:
    try:
        freed = blobs.remove(key)
    except OSError as exc:
        log.warning("retention could not delete blob %s: %s", key, exc)
        counts["errors"] += 1
        return
    if freed is not None:
        counts[files] += 1
        counts["bytes_freed"] += freed


def remove_unused_photos(session: Session, blobs: BlobStore, keys: set[str], counts: Counter[str]) -> None:
    """Delete the photo files of `keys` that no job keeping its photo refers to."""
    keys = {key for key in keys if key.startswith(PHOTOS_NAMESPACE)}
    if not keys:
        return
    used = session.exec(select(Job.blob_key).where(col(Job.blob_key).in_(keys), col(Job.photo_deleted_at).is_(None)))
    for key in sorted(keys - set(used.all())):
        _remove_blob(blobs, key, counts, "photo_files")


def delete_photos(session: Session, blobs: BlobStore, cutoff: datetime, farmers_to_agree: int, batch: int,
                  now: datetime) -> Counter[str]:  # fmt: skip
    """Mark up to `batch` jobs' photos deleted, in one statement (a label given meanwhile keeps its photo), then
    delete the files that no kept job shares. Marked first: a file a crash leaves behind goes with its job row."""
    chosen = photo_candidates(cutoff, farmers_to_agree).limit(batch)
    statement = (update(JOBS).where(JOBS.c.id.in_(chosen), JOBS.c.photo_deleted_at.is_(None))
                 .values(photo_deleted_at=now).returning(JOBS.c.blob_key))  # fmt: skip
    keys = list(session.execute(statement).scalars().all())
    session.commit()
    counts = Counter({"photos": len(keys)})
    remove_unused_photos(session, blobs, set(keys), counts)
    return counts


def delete_jobs(
    session: Session, blobs: BlobStore, cutoff: datetime, farmers_to_agree: int, batch: int
) -> Counter[str]:
    """Delete up to `batch` jobs with their feedback, in one transaction; then their photo files that no kept job
    shares (a job's photo goes with it, if it had not gone before; or a file a crash left behind)."""
    rows = session.exec(select(Job.id, Job.blob_key).where(
        col(Job.id).in_(job_candidates(cutoff, farmers_to_agree).limit(batch)))).all()  # fmt: skip
    if not rows:
        return Counter()
    ids = [job_id for job_id, _ in rows]
    feedback = _rows(session, delete(Feedback).where(col(Feedback.job_id).in_(ids)))
    deleted = _rows(session, delete(Job).where(col(Job.id).in_(ids)))
    session.commit()
    counts = Counter({"jobs": deleted, "feedback": feedback})
    remove_unused_photos(session, blobs, {key for _, key in rows}, counts)
    return counts


def delete_oldest(session: Session, table: type[ClientEvent | MetricPoint], cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` rows of `table` stamped before `cutoff` (client events by when the server received
    them, metric points by their tick), oldest first, in one statement."""
    stamp = col(ClientEvent.received_at) if table is ClientEvent else col(MetricPoint.at)
    chosen = select(col(table.id)).where(stamp < cutoff).order_by(stamp).limit(batch)
    deleted = _rows(session, delete(table).where(col(table.id).in_(chosen)))
    session.commit()
    return deleted


def ended_sessions(now: datetime) -> ColumnElement[bool]:
    return or_(col(UserSession.ended_at).is_not(None), col(UserSession.expires_at) < now)


def delete_ended_sessions(session: Session, now: datetime, batch: int) -> int:
    """Browser logins that ended (logout, a disabled person) or expired open nothing: up to `batch` of them go."""
    chosen = select(col(UserSession.id_hash)).where(ended_sessions(now)).limit(batch)
    deleted = _rows(session, delete(UserSession).where(col(UserSession.id_hash).in_(chosen)))
    session.commit()
    return deleted


def model_files(row: ModelVersion) -> list[str]:
    """The blob keys of a version's checkpoint and of its serving builds (each .onnx with its .json)."""
    builds = [build_key(row.sha256, runtime) for runtime in BUILD_NAMESPACES]
    return [row.blob_key, *builds, *(key.removesuffix(".onnx") + ".json" for key in builds)]


def delete_challengers(session: Session, blobs: BlobStore, cutoff: datetime, batch: int,
                       now: datetime) -> Counter[str]:  # fmt: skip
    """Mark up to `batch` versions' artifacts deleted, in one statement that checks the aliases again, then delete
    their checkpoints and builds (unless a version keeping its artifact is the same file)."""
    statement = (update(ModelVersion)
                 .where(col(ModelVersion.version).in_(challenger_candidates(cutoff).limit(batch)),
                        col(ModelVersion.artifact_deleted_at).is_(None))
                 .values(artifact_deleted_at=now).returning(col(ModelVersion.version))
                 .execution_options(synchronize_session=False))  # fmt: skip
    versions = list(session.execute(statement).scalars().all())
    session.commit()
    counts = Counter({"challengers": len(versions)})
    if not versions:
        return counts
    kept = set(session.exec(select(ModelVersion.sha256).where(col(ModelVersion.artifact_deleted_at).is_(None))).all())
    for row in session.exec(select(ModelVersion).where(col(ModelVersion.version).in_(versions))).all():
        if row.sha256 in kept:
            continue
        for key in model_files(row):
            _remove_blob(blobs, key, counts, "model_files")
        for runtime in BUILD_NAMESPACES:  # the lock a build is made under (core.serving.ensure_build)
            Path(f"{blobs.path(build_key(row.sha256, runtime))}.lock").unlink(missing_ok=True)
    return counts


def run_files(session: Session, model_dir: Path, cutoff: datetime, limit: int | None) -> list[Path]:
    """A run's dataset folder and checkpoint copy, once the run finished before `cutoff` (files of a run the
    database does not know: once older than it); at most `limit`."""
    found: list[Path] = []
    paths = sorted(model_dir.iterdir()) if model_dir.is_dir() else []
    for path in paths:
        match = RUN_FILE.match(path.name)
        if match is None:
            continue
        run = session.get(RetrainRun, int(match[1] or match[2]))
        if run is not None and RetrainStatus(run.status).open:
            continue
        finished = (run.finished_at or run.fired_at) if run is not None else None
        if (finished.timestamp() if finished else path.lstat().st_mtime) < cutoff.timestamp():
            found.append(path)
        if limit is not None and len(found) >= limit:
            break
    return found


def _size(path: Path) -> int:
    """Bytes of the regular files under `path`, links not followed (they point into the base data)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    return sum(item.lstat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink())


def delete_run_files(session: Session, model_dir: Path, cutoff: datetime, batch: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in run_files(session, model_dir, cutoff, batch):
        try:
            size = _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # removes the links it holds, never what they point to
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("retention could not delete %s: %s", path, exc)
            counts["errors"] += 1
            continue
        counts["run_files"] += 1
        counts["bytes_freed"] += size
    return counts


def delete_part_files(session: Session, blobs: BlobStore, now: datetime, batch: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in uploads.orphan_parts(session, blobs, now, batch):
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # another pass was first
            continue
        except OSError as exc:
            log.warning("retention could not delete %s: %s", path, exc)
            counts["errors"] += 1
            continue
        counts["part_files"] += 1
        counts["bytes_freed"] += size
    return counts


def run_pass(session_factory: Callable[[], Session], blobs: BlobStore, config: Settings, now: datetime,
             client: redis.Redis | None = None, namespace: Namespace | None = None) -> Outcome:  # fmt: skip
    """One batch of each kind, each in its own transaction; with Redis and the deployment's namespace, the
    counters too."""
    cut, batch, farmers = Cutoffs.of(config, now), config.RETENTION_BATCH, config.FARMERS_TO_AGREE
    counts: Counter[str] = Counter()
    with session_factory() as session:
        counts.update(delete_photos(session, blobs, cut.photos, farmers, batch, now))
        counts.update(delete_jobs(session, blobs, cut.jobs, farmers, batch))
        counts["client_events"] = delete_oldest(session, ClientEvent, cut.client_events, batch)
        counts["metric_points"] = delete_oldest(session, MetricPoint, cut.metric_points, batch)
        counts.update(delete_challengers(session, blobs, cut.challengers, batch, now))
        counts.update(delete_run_files(session, config.model_dir, cut.run_files, batch))
        counts.update(delete_part_files(session, blobs, now, batch))
        counts["user_sessions"] = delete_ended_sessions(session, now, batch)
    if client is not None and namespace is not None:
        counts["counters"] = telemetry.drop_unknown(client, namespace, CLIENT_EVENTS_COUNTER, "kind", KNOWN_KINDS)
    counts = +counts  # what is zero is left out
    if counts:
        log.info("retention: %s", dict(counts))
    return Outcome(counts, more=any(counts[kind] >= batch for kind in KINDS))


def run_all(session_factory: Callable[[], Session], blobs: BlobStore, config: Settings, now: datetime,
            client: redis.Redis | None = None, namespace: Namespace | None = None) -> Counter[str]:  # fmt: skip
    """Passes until no batch is full: everything past its time, still in short transactions (`mhogo retention
    run`)."""
    total: Counter[str] = Counter()
    while True:
        outcome = run_pass(session_factory, blobs, config, now, client, namespace)
        total.update(outcome.counts)
        if not outcome.more:
            return total


def _count(session: Session, statement: SelectOfScalar[Any]) -> int:
    return int(session.exec(select(func.count()).select_from(statement.subquery())).one())


def kept_photos(session: Session, config: Settings, now: datetime) -> int:
    """Photos past their time that stay, their trusted label making them training data."""
    return _count(session, kept_labelled(Cutoffs.of(config, now).photos, config.FARMERS_TO_AGREE))


def pending(session: Session, config: Settings, now: datetime, client: redis.Redis | None = None,
            namespace: Namespace | None = None, blobs: BlobStore | None = None) -> Counter[str]:  # fmt: skip
    """What a run would delete now, counted, changing nothing (`mhogo retention run --dry-run`); with the blob store,
    the part files too."""
    cut, farmers = Cutoffs.of(config, now), config.FARMERS_TO_AGREE
    counts: Counter[str] = Counter({
        "photos": _count(session, photo_candidates(cut.photos, farmers)),
        "jobs": _count(session, job_candidates(cut.jobs, farmers)),
        "client_events": _count(session, select(ClientEvent.id).where(
            col(ClientEvent.received_at) < cut.client_events)),
        "metric_points": _count(session, select(MetricPoint.id).where(col(MetricPoint.at) < cut.metric_points)),
        "challengers": _count(session, challenger_candidates(cut.challengers)),
        "run_files": len(run_files(session, config.model_dir, cut.run_files, None)),
        "user_sessions": _count(session, select(UserSession.id_hash).where(ended_sessions(now))),
    })  # fmt: skip
    if blobs is not None:
        counts["part_files"] = len(uploads.orphan_parts(session, blobs, now))
    if client is not None and namespace is not None:
        counts["counters"] = len(telemetry.unknown(client, namespace, CLIENT_EVENTS_COUNTER, "kind", KNOWN_KINDS))
    return counts

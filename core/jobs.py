"""Storage functions for jobs. Every state change is one conditional UPDATE, so redelivered or duplicated tasks,
the API and the sweeper can race without ever moving a finished job or storing a second result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Update, case, func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from schemas.reasons import RejectReason
from schemas.tables import TERMINAL_STATUSES, Job, JobStatus, new_id, utcnow
from schemas.tasks import PhotoWork

ACTIVE_STATUSES = (JobStatus.RECEIVED, JobStatus.QUEUED, JobStatus.PROCESSING)
INSERT_JOB = insert(Job.__table__)  # type: ignore[attr-defined]  # a Core insert: no ORM unit of work per upload


@dataclass(frozen=True)
class NewPhoto:
    device_id: int
    idempotency_key: str
    content_sha256: str
    blob_key: str
    content_type: str
    size_bytes: int


def find_job(session: Session, device_id: int, idempotency_key: str) -> Job | None:
    statement = select(Job).where(Job.device_id == device_id, Job.idempotency_key == idempotency_key)
    return session.exec(statement).first()


def insert_job(session: Session, photo: NewPhoto, queued: bool = False) -> str | None:
    """Insert and commit the job in one statement; its id, or None when the device used this key before (or a
    concurrent request with it committed first).

    `queued`: the caller sends its message right after the commit, so the row says so at once (one write instead
    of two); if the send fails, `unqueue` puts it back for the sweeper."""
    now = utcnow()
    job_id = new_id()
    row = {
        "id": job_id,
        "device_id": photo.device_id,
        "idempotency_key": photo.idempotency_key,
        "content_sha256": photo.content_sha256,
        "blob_key": photo.blob_key,
        "content_type": photo.content_type,
        "size_bytes": photo.size_bytes,
        "status": (JobStatus.QUEUED if queued else JobStatus.RECEIVED).value,
        "enqueue_count": 1 if queued else 0,
        "created_at": now,
        "updated_at": now,
    }
    try:
        session.connection().execute(INSERT_JOB, row)  # one statement, compiled once per process
        session.commit()
    except IntegrityError:
        session.rollback()
        if find_job(session, photo.device_id, photo.idempotency_key) is None:
            raise  # the unique constraint did not fire: a real fault
        return None
    return job_id


def create_job(session: Session, photo: NewPhoto, queued: bool = False) -> tuple[Job, bool]:
    """`insert_job`, returning the row: the new one, or the one that had the key first."""
    job_id = insert_job(session, photo, queued)
    job = session.get(Job, job_id) if job_id else find_job(session, photo.device_id, photo.idempotency_key)
    assert job is not None
    return job, job_id is not None


def get_job(session: Session, job_id: str, device_id: int | None = None) -> Job | None:
    job = session.get(Job, job_id)
    if job is None or (device_id is not None and job.device_id != device_id):
        return None
    return job


def _changed(session: Session, statement: Update) -> bool:
    result = session.execute(statement)
    session.commit()
    return bool(cast(CursorResult[Any], result).rowcount)


def record_enqueued(session: Session, job_id: str) -> bool:
    """A message for the job is on the queue: `received` becomes `queued`; later states stay as they are."""
    statement = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(
            status=case((col(Job.status) == JobStatus.RECEIVED, JobStatus.QUEUED.value), else_=col(Job.status)),
            enqueue_count=col(Job.enqueue_count) + 1,
            updated_at=utcnow(),
        )
    )
    return _changed(session, statement)


def unqueue(session: Session, job_id: str) -> bool:
    """Its message could not be sent after all: `queued` becomes `received`, so the sweeper sends it within
    MHOGO_SWEEP_RECEIVED_AFTER_S."""
    statement = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == JobStatus.QUEUED)
        .values(status=JobStatus.RECEIVED.value, enqueue_count=col(Job.enqueue_count) - 1, updated_at=utcnow())
    )
    return _changed(session, statement)


def claim(session: Session, job_id: str) -> bool:
    """Mark the job `processing` unless it is finished. False means: finished already, skip the work."""
    statement = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(status=JobStatus.PROCESSING.value, updated_at=utcnow())
    )
    return _changed(session, statement)


def finish(session: Session, work: PhotoWork) -> bool:
    """Store the outcome once. False when another delivery of the same job finished it first."""
    now = utcnow()
    values: dict[str, object] = {
        "updated_at": now,
        "finished_at": now,
        "input_stats": work.input_stats,
        "timings_ms": work.timings_ms,
    }
    if work.rejection is not None:
        reason = RejectReason(work.rejection)
        values |= {
            "status": JobStatus.REJECTED.value,
            "reason_code": reason.value,
            "reason": reason.message,
            "model_version": work.model_version,
        }  # the model whose leaf gate turned it away, if any
    else:
        values |= {
            "status": JobStatus.CLASSIFIED.value,
            "label": work.label,
            "confidence": work.confidence,
            "probabilities": work.probabilities,
            "model_version": work.model_version,
        }
    statement = (
        update(Job).where(col(Job.id) == work.job_id, col(Job.status).not_in(TERMINAL_STATUSES)).values(**values)
    )
    return _changed(session, statement)


def fail(session: Session, job_id: str, error: str) -> bool:
    now = utcnow()
    statement = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status).not_in(TERMINAL_STATUSES))
        .values(status=JobStatus.FAILED.value, reason=error[:500], updated_at=now, finished_at=now)
    )
    return _changed(session, statement)


def jobs_to_sweep(
    session: Session, now: datetime, received_after: timedelta, stale_after: timedelta, limit: int = 500
) -> list[Job]:
    """Jobs that never reached the queue, or whose message went missing (queued or processing for too long)."""
    statement = (
        select(Job)
        .where(
            or_(
                (col(Job.status) == JobStatus.RECEIVED) & (col(Job.updated_at) < now - received_after),
                col(Job.status).in_((JobStatus.QUEUED, JobStatus.PROCESSING))
                & (col(Job.updated_at) < now - stale_after),
            )
        )
        .order_by(col(Job.created_at))
        .limit(limit)
    )
    return list(session.exec(statement).all())


def outcome_counts(session: Session, since: datetime) -> dict[str, Any]:
    """Jobs created since `since`, by status, and the rejected ones by reason code: what operators watch."""
    by_status = session.exec(
        select(Job.status, func.count()).where(col(Job.created_at) >= since).group_by(col(Job.status))
    ).all()
    by_reason = session.exec(
        select(Job.reason_code, func.count())
        .where(col(Job.created_at) >= since, col(Job.status) == JobStatus.REJECTED.value)
        .group_by(col(Job.reason_code))
    ).all()
    return {
        "since": since.isoformat(),
        "jobs": sum(count for _, count in by_status),
        "by_status": {str(status): count for status, count in by_status},
        "rejected_by_reason": {str(reason): count for reason, count in by_reason},
    }


def failed_jobs(session: Session, limit: int = 100) -> list[Job]:
    """The dead letters: jobs that failed for good (a poison message, a stage that kept failing), newest first."""
    statement = (
        select(Job).where(col(Job.status) == JobStatus.FAILED.value).order_by(col(Job.updated_at).desc()).limit(limit)
    )
    return list(session.exec(statement).all())


def requeue(session: Session, job_id: str) -> Job | None:
    """Give a failed job another life once an operator fixed the cause: back to `received`, its enqueue count and
    error cleared. None when the job is not failed (only dead letters are requeued)."""
    statement = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == JobStatus.FAILED.value)
        .values(status=JobStatus.RECEIVED.value, enqueue_count=0, reason=None, finished_at=None, updated_at=utcnow())
    )
    if not _changed(session, statement):
        return None
    return session.get(Job, job_id, populate_existing=True)

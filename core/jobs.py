"""Storage functions for jobs. Every state change is one conditional UPDATE, so redelivered or duplicated tasks,
the API and the sweeper can race without ever moving a finished job or storing a second result."""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Update, bindparam, case, func, or_, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from schemas.errors import BadInput
from schemas.findings import Finding
from schemas.statuses import TERMINAL_STATUSES, JobStatus
from schemas.tables import Job, new_id, utcnow

ACTIVE_STATUSES = (JobStatus.RECEIVED, JobStatus.QUEUED, JobStatus.PROCESSING)
JOBS_TABLE = Job.__table__  # type: ignore[attr-defined]
# Core inserts (no ORM unit of work per upload) that skip a row whose (device, key) is taken and name the rows they
# did insert; made once per process, so their SQL is compiled once per group size.
_INSERT_NEW_JOBS = {
    name: dialect.insert(JOBS_TABLE)
    .on_conflict_do_nothing(index_elements=["device_id", "idempotency_key"])
    .returning(JOBS_TABLE.c.id)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}


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


def find_jobs(session: Session, keys: Collection[tuple[int, str]]) -> dict[tuple[int, str], Job]:
    """The jobs that exist of these (device, Idempotency-Key) pairs, in one query: a group's retries."""
    if not keys:
        return {}
    statement = select(Job).where(tuple_(col(Job.device_id), col(Job.idempotency_key)).in_(sorted(set(keys))))
    return {(job.device_id, job.idempotency_key): job for job in session.exec(statement)}


def insert_jobs(session: Session, photos: Sequence[NewPhoto], queued: bool = False) -> list[str | None]:
    """Insert the jobs in one statement and commit them in one transaction (one flush of the database's log for the
    whole group). Per photo its new id, or None where the device used that key before, in an earlier upload or
    earlier in `photos`: the retry of a photo already taken.

    `queued`: the caller sends their messages right after the commit, so the rows say so at once (one write
    instead of two); a photo whose send fails goes back to the sweeper with `unqueue`."""
    if not photos:
        return []
    now = utcnow()
    status = (JobStatus.QUEUED if queued else JobStatus.RECEIVED).value
    rows = [
        {
            "id": new_id(),
            "device_id": photo.device_id,
            "idempotency_key": photo.idempotency_key,
            "content_sha256": photo.content_sha256,
            "blob_key": photo.blob_key,
            "content_type": photo.content_type,
            "size_bytes": photo.size_bytes,
            "status": status,
            "enqueue_count": 1 if queued else 0,
            "created_at": now,
            "updated_at": now,
        }
        for photo in photos
    ]
    dialect = session.get_bind().dialect.name
    statement = _INSERT_NEW_JOBS.get(dialect)
    if statement is None:
        raise NotImplementedError(f"no insert-unless-the-key-exists for {dialect}")
    ids = [str(row["id"]) for row in rows]
    inserted = set(session.connection().execute(statement, rows).scalars())
    session.commit()
    return [job_id if job_id in inserted else None for job_id in ids]


def get_job(session: Session, job_id: str, device_id: int | None = None) -> Job | None:
    job = session.get(Job, job_id)
    if job is None or (device_id is not None and job.device_id != device_id):
        return None
    return job


@dataclass(frozen=True)
class JobCursor:
    """Where a page of a device's jobs ended (its last job's creation time and id): the next page starts after it.
    Opaque to the phone: base64url of "<ISO time>|<job id>"."""

    created_at: datetime
    job_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.created_at.isoformat()}|{self.job_id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> JobCursor:
        """The cursor a page gave out; BadInput for anything else."""
        try:
            when, job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
            created_at = datetime.fromisoformat(when)
        except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors too
            raise BadInput(BAD_CURSOR) from exc
        if created_at.tzinfo is None or not JOB_ID.fullmatch(job_id):
            raise BadInput(BAD_CURSOR)
        return cls(created_at, job_id)


JOB_ID = re.compile(r"[0-9A-Za-z_-]{1,32}")
BAD_CURSOR = "'before' is not a cursor this API gave out: send the 'next' of the page before, or leave it out."


def device_jobs(
    session: Session, device_id: int, limit: int, before: JobCursor | None = None
) -> tuple[list[Job], JobCursor | None]:
    """The device's jobs, newest first (by creation time, then id), at most `limit` of them after `before`; and the
    cursor of the next page, or None when this one is the last. A range of the (device, created_at, id) index."""
    statement = select(Job).where(col(Job.device_id) == device_id)
    if before is not None:
        statement = statement.where(
            or_(
                col(Job.created_at) < before.created_at,
                (col(Job.created_at) == before.created_at) & (col(Job.id) < before.job_id),
            )
        )
    statement = statement.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit + 1)
    found = list(session.exec(statement).all())
    page = found[:limit]
    more = len(found) > limit
    return page, JobCursor(page[-1].created_at, page[-1].id) if more else None


def own_job_ids(session: Session, device_id: int, job_ids: Collection[str]) -> set[str]:
    """Those of `job_ids` that are jobs of this device."""
    if not job_ids:
        return set()
    statement = select(Job.id).where(col(Job.device_id) == device_id, col(Job.id).in_(set(job_ids)))
    return set(session.exec(statement).all())


def _rows_changed(session: Session, statement: Update, parameters: dict[str, Any] | None = None) -> int:
    """Run and commit the UPDATE; how many rows it changed. As Core on the session's connection: the ORM's
    bulk-update path would evaluate the criteria against every object the session holds, at about the CPU of the
    statement. Objects the session holds are read again when next used."""
    result = session.connection().execute(statement, parameters or {})
    session.commit()
    session.expire_all()
    return int(result.rowcount)


def _changed(session: Session, statement: Update, parameters: dict[str, Any] | None = None) -> bool:
    return _rows_changed(session, statement, parameters) > 0


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


def unqueue(session: Session, job_ids: Sequence[str]) -> int:
    """Their messages could not be sent after all: `queued` becomes `received`, so the sweeper sends them within
    MHOGO_SWEEP_RECEIVED_AFTER_S. Returns how many changed."""
    statement = (
        update(Job)
        .where(col(Job.id).in_(job_ids), col(Job.status) == JobStatus.QUEUED)
        .values(status=JobStatus.RECEIVED.value, enqueue_count=col(Job.enqueue_count) - 1, updated_at=utcnow())
    )
    return _rows_changed(session, statement)


# The two writes of every photo, built once per process: building an UPDATE and its cache key cost more CPU than
# SQLite spends running it. Core statements on the jobs table, so the ORM's bulk-update machinery stays out too.
_C = JOBS_TABLE.c
_CLAIM = (
    update(JOBS_TABLE)
    .where(_C.id == bindparam("job_id"), _C.status.in_([status.value for status in ACTIVE_STATUSES]))
    .values(status=JobStatus.PROCESSING.value, updated_at=bindparam("now"))
)
# The columns it sets are the keys of the parameters it runs with: a finding's row and the two times.
_FINISH = update(JOBS_TABLE).where(
    _C.id == bindparam("job_id"), _C.status.not_in([status.value for status in TERMINAL_STATUSES])
)


class Claim(StrEnum):
    CLAIMED = "claimed"  # the job is `processing` now: do the work
    FINISHED = "finished"  # an earlier delivery finished it: skip the work, the message is done
    UNKNOWN = "unknown"  # no such job in this database: the message is not this database's to do, nor to drop


def claim(session: Session, job_id: str) -> Claim:
    """Mark the job `processing` unless it is finished. When nothing changed, one more query tells a finished job
    from one the database does not have (a task of another deployment's, or for a job removed since)."""
    if _changed(session, _CLAIM, {"job_id": job_id, "now": utcnow()}):
        return Claim.CLAIMED
    exists = session.connection().execute(select(_C.id).where(_C.id == job_id)).first() is not None
    return Claim.FINISHED if exists else Claim.UNKNOWN


def finish(session: Session, job_id: str, finding: Finding) -> bool:
    """Store what was found on the job's photo, once. False when another delivery of the same job finished it
    first."""
    now = utcnow()
    return _changed(session, _FINISH, finding.row() | {"updated_at": now, "finished_at": now, "job_id": job_id})


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
    error cleared. None when the job is not failed (only dead letters are requeued) or its photo was deleted."""
    statement = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == JobStatus.FAILED.value, col(Job.photo_deleted_at).is_(None))
        .values(status=JobStatus.RECEIVED.value, enqueue_count=0, reason=None, finished_at=None, updated_at=utcnow())
    )
    if not _changed(session, statement):
        return None
    return session.get(Job, job_id, populate_existing=True)

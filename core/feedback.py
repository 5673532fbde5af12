"""Storage of feedback events and the per-model-version counts of confirmed and corrected predictions."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from schemas.tables import Feedback, Job, ModelFeedbackCount
from schemas.tasks import FeedbackEvent


def record_feedback(session: Session, event: FeedbackEvent) -> bool:
    """Store the event and bump the counts in one transaction. False when this event was stored before."""
    if session.get(Feedback, event.event_id) is not None:
        return False
    job = session.get(Job, event.job_id)
    if job is None:
        raise LookupError(f"feedback for unknown job {event.job_id}")
    agrees = None if job.label is None else job.label == event.label
    session.add(
        Feedback(
            id=event.event_id,
            job_id=event.job_id,
            label=event.label,
            source=event.source,
            comment=event.comment,
            predicted_label=job.label,
            model_version=job.model_version,
            agrees=agrees,
            created_at=event.created_at,
        )
    )
    if job.model_version is not None and agrees is not None:
        _bump(session, job.model_version, event.source.value, agrees)
    try:
        session.commit()
    except IntegrityError:  # a concurrent delivery of the same event stored it first; its counts stand
        session.rollback()
        return False
    return True


def _bump(session: Session, model_version: str, source: str, agrees: bool) -> None:
    """Upsert the counter row: the database adds, so concurrent feedback workers never lose an increment."""
    column = "confirmed" if agrees else "corrected"
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    table = ModelFeedbackCount.__table__  # type: ignore[attr-defined]
    statement = insert(table).values(
        model_version=model_version, source=source, confirmed=int(agrees), corrected=int(not agrees)
    )
    statement = statement.on_conflict_do_update(
        index_elements=["model_version", "source"], set_={column: table.c[column] + 1}
    )
    session.execute(statement)

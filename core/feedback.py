"""Storage of feedback events, the per-model-version counts of confirmed and corrected predictions, and the labels
feedback gives photos (which of them are trusted enough to train and judge a model on)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, case, distinct, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from schemas.statuses import JobStatus
from schemas.tables import Feedback, FeedbackSource, Job, ModelFeedbackCount
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


@dataclass(frozen=True)
class LabelledPhoto:
    """A classified photo with the label feedback gives it: `label` is the trusted one (an agronomist's, or farmers
    agreeing), `farmer_label` the latest farmer's word whether or not it is trusted."""

    job_id: str
    blob_key: str
    model_version: str | None
    predicted: str
    confidence: float
    label: str | None
    farmer_label: str | None
    agronomist_label: str | None
    labelled_at: datetime  # the latest feedback on it

    def label_from(self, source: str) -> str | None:
        return {"trusted": self.label, "farmer": self.farmer_label, "agronomist": self.agronomist_label}[source]


def trusted_label(feedback: Sequence[Feedback], farmers_to_agree: int) -> str | None:
    """An agronomist's latest label; else the farmers' label when enough of them agree and none disagrees."""
    ordered = sorted(feedback, key=lambda row: row.created_at)
    agronomists = [row.label for row in ordered if row.source == FeedbackSource.AGRONOMIST]
    if agronomists:
        return agronomists[-1]
    farmers = {row.label for row in ordered if row.source == FeedbackSource.FARMER}
    count = sum(row.source == FeedbackSource.FARMER for row in ordered)
    return farmers.pop() if len(farmers) == 1 and count >= farmers_to_agree else None


def trusted_jobs(farmers_to_agree: int) -> SelectOfScalar[str]:
    """The ids of the jobs `trusted_label` gives a label, as one query (retention keeps their photos): an agronomist
    spoke, or at least `farmers_to_agree` farmers did and all of them said the same."""
    source, label = col(Feedback.source), col(Feedback.label)
    agronomists = func.sum(case((source == FeedbackSource.AGRONOMIST.value, 1), else_=0))
    farmers = func.sum(case((source == FeedbackSource.FARMER.value, 1), else_=0))
    farmer_labels = func.count(distinct(case((source == FeedbackSource.FARMER.value, label), else_=None)))
    return (
        select(col(Feedback.job_id))
        .group_by(col(Feedback.job_id))
        .having((agronomists > 0) | ((farmers >= farmers_to_agree) & (farmer_labels == 1)))
    )


def labelled_photos(
    session: Session,
    farmers_to_agree: int,
    model_version: str | None = None,
    since: datetime | None = None,
    last: int | None = None,
) -> list[LabelledPhoto]:
    """Classified photos with feedback, newest feedback first; of one model version, labelled since a time, or the
    `last` N photos."""
    statement = (
        select(Feedback, Job)
        .join(Job, col(Feedback.job_id) == col(Job.id))
        .where(col(Job.status) == JobStatus.CLASSIFIED.value)
        .order_by(col(Feedback.created_at).desc())
    )
    if model_version is not None:
        statement = statement.where(col(Job.model_version) == model_version)
    if since is not None:
        statement = statement.where(col(Feedback.created_at) >= since)
    if last is not None:
        statement = statement.limit(last * 4)  # a photo may carry a few labels; enough rows for `last` photos
    by_job: dict[str, list[Feedback]] = {}
    jobs: dict[str, Job] = {}
    for feedback, job in session.exec(statement).all():
        by_job.setdefault(job.id, []).append(feedback)
        jobs[job.id] = job
    photos = []
    for job_id, rows in by_job.items():
        job = jobs[job_id]
        farmer = [row for row in rows if row.source == FeedbackSource.FARMER]
        agronomist = [row for row in rows if row.source == FeedbackSource.AGRONOMIST]
        photos.append(
            LabelledPhoto(
                job_id=job_id,
                blob_key=job.blob_key,
                model_version=job.model_version,
                predicted=job.label or "",
                confidence=job.confidence or 0.0,
                label=trusted_label(rows, farmers_to_agree),
                farmer_label=max(farmer, key=lambda row: row.created_at).label if farmer else None,
                agronomist_label=max(agronomist, key=lambda row: row.created_at).label if agronomist else None,
                labelled_at=max(row.created_at for row in rows),
            )
        )
    photos.sort(key=lambda photo: photo.labelled_at, reverse=True)
    return photos[:last] if last is not None else photos

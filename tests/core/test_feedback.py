import uuid

from sqlmodel import Session, select

from core import jobs
from core.feedback import record_feedback
from schemas.findings import Finding
from schemas.reasons import RejectReason
from schemas.tables import FeedbackSource, ModelFeedbackCount, utcnow
from schemas.tasks import FeedbackEvent
from tests.utils.factories import make_device, make_job


def classified_job(session: Session, label: str = "cmd", version: str = "v1") -> str:
    device, _ = make_device(session)
    job = make_job(session, device, key=uuid.uuid4().hex, data=uuid.uuid4().bytes)
    jobs.finish(session, job.id, Finding(label=label, model_version=version))
    return job.id


def event(job_id: str, label: str, source: FeedbackSource = FeedbackSource.FARMER) -> FeedbackEvent:
    return FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job_id, label=label, source=source, created_at=utcnow())


def counts(session: Session) -> dict[tuple[str, str], tuple[int, int]]:
    rows = session.exec(select(ModelFeedbackCount)).all()
    return {(c.model_version, c.source): (c.confirmed, c.corrected) for c in rows}


def test_counts_confirmed_and_corrected_per_version_and_source(session: Session) -> None:
    job = classified_job(session, "cmd", "v1")
    assert record_feedback(session, event(job, "cmd"))
    assert record_feedback(session, event(job, "cbsd"))
    assert record_feedback(session, event(job, "cbsd", FeedbackSource.AGRONOMIST))
    other = classified_job(session, "healthy", "v2")
    assert record_feedback(session, event(other, "healthy"))
    assert counts(session) == {("v1", "farmer"): (1, 1), ("v1", "agronomist"): (0, 1), ("v2", "farmer"): (1, 0)}


def test_a_redelivered_event_counts_once(session: Session) -> None:
    job = classified_job(session)
    once = event(job, "cgm")
    assert record_feedback(session, once)
    assert not record_feedback(session, once)
    assert counts(session) == {("v1", "farmer"): (0, 1)}


def test_feedback_on_a_rejected_photo_is_stored_but_not_counted(session: Session) -> None:
    device, _ = make_device(session)
    job = make_job(session, device)
    jobs.finish(session, job.id, Finding(reason=RejectReason.BLURRY))
    assert record_feedback(session, event(job.id, "healthy"))
    assert counts(session) == {}

"""Feedback storage, who a label is trusted from, and the cap on one device's share, on SQLite and PostgreSQL."""

import uuid

import pytest
from pydantic import ValidationError
from sqlmodel import Session, col, select

from core import jobs
from core.config import Settings
from core.feedback import (
    LabelledPhoto,
    capped,
    feedback_event,
    keyed_event_id,
    labelled_photos,
    recent_labels,
    record_feedback,
    share_capped,
)
from schemas.errors import IdempotencyConflict
from schemas.findings import Finding
from schemas.reasons import RejectReason
from schemas.tables import Device, Feedback, FeedbackSource, ModelFeedbackCount, utcnow
from schemas.tasks import FeedbackEvent
from tests.utils.factories import label_event, make_device, make_job

AGRONOMIST, FARMER = FeedbackSource.AGRONOMIST, FeedbackSource.FARMER


def classified_job(session: Session, label: str = "cmd", version: str = "v1", device: Device | None = None) -> str:
    device = device or make_device(session)[0]
    job = make_job(session, device, key=uuid.uuid4().hex, data=uuid.uuid4().bytes)
    jobs.finish(session, job.id, Finding(label=label, model_version=version))
    return job.id


def event(job_id: str, label: str, source: FeedbackSource = FARMER) -> FeedbackEvent:
    return label_event(job_id, label, source)


def counts(session: Session) -> dict[tuple[str, str], tuple[int, int]]:
    rows = session.exec(select(ModelFeedbackCount)).all()
    return {(c.model_version, c.source): (c.confirmed, c.corrected) for c in rows}


def test_counts_confirmed_and_corrected_per_version_and_source(session: Session) -> None:
    job = classified_job(session, "cmd", "v1")
    assert record_feedback(session, event(job, "cmd"))
    assert record_feedback(session, event(job, "cbsd"))
    assert record_feedback(session, event(job, "cbsd", AGRONOMIST))
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


def farmers_say(session: Session, job_id: str, *said: tuple[Device, str]) -> LabelledPhoto:
    for device, label in said:
        assert record_feedback(session, label_event(job_id, label, FARMER, device.id))
    [photo] = [p for p in labelled_photos(session, farmers_to_agree=2) if p.job_id == job_id]
    return photo


def test_two_posts_from_one_device_are_one_farmer_not_two_agreeing(session: Session) -> None:
    """MHOGO_FARMERS_TO_AGREE counted labels: one phone sending the same label twice made it trusted."""
    phone, other = make_device(session, "phone")[0], make_device(session, "other")[0]
    twice = farmers_say(session, classified_job(session, device=phone), (phone, "cbsd"), (phone, "cbsd"))
    assert (twice.label, twice.farmer_label) == (None, "cbsd")
    two = farmers_say(session, classified_job(session, device=phone), (phone, "cbsd"), (other, "cbsd"))
    assert (two.label, two.label_source, two.vouched_by) == ("cbsd", FARMER, frozenset({phone.id, other.id}))
    # Each device counts with its latest word: a farmer who corrects a slip agrees; one who disagrees spoils it.
    corrected = farmers_say(session, classified_job(session, device=phone), (phone, "cmd"), (phone, "cbsd"),
                            (other, "cbsd"))  # fmt: skip
    assert corrected.label == "cbsd"
    disagree = farmers_say(session, classified_job(session, device=phone), (phone, "cmd"), (other, "cbsd"))
    assert disagree.label is None


def test_an_agronomist_s_label_needs_the_agronomist_and_a_farmer_s_is_the_device_s(session: Session) -> None:
    job = classified_job(session)
    now = utcnow()
    with pytest.raises(ValidationError, match="agronomist's identity"):
        FeedbackEvent(event_id="e1", job_id=job, label="cmd", source=AGRONOMIST, created_at=now)
    with pytest.raises(ValidationError, match="agronomist's identity"):
        FeedbackEvent(event_id="e1", job_id=job, label="cmd", source=AGRONOMIST, agronomist="a", device_id=1,
                      created_at=now)  # fmt: skip
    with pytest.raises(ValidationError, match="carries no agronomist"):
        FeedbackEvent(event_id="e1", job_id=job, label="cmd", source=FARMER, agronomist="a", created_at=now)
    assert record_feedback(session, event(job, "cbb", AGRONOMIST))
    row = session.exec(select(Feedback).where(col(Feedback.job_id) == job)).one()
    assert (row.source, row.agronomist, row.device_id) == (AGRONOMIST, "agronomist in tests", None)


def test_a_message_queued_before_events_carried_the_device_is_the_job_device_s_farmer_word(session: Session) -> None:
    """What the API sent before this release: no device, and a source straight from the request body."""
    device, _ = make_device(session)
    job = classified_job(session, device=device)
    for n, said in enumerate(("farmer", "agronomist")):
        payload = {"event_id": f"old{n}", "job_id": job, "label": "cgm", "source": said, "comment": None,
                   "created_at": utcnow().isoformat()}  # fmt: skip
        assert record_feedback(session, feedback_event(payload))
    rows = session.exec(select(Feedback).where(col(Feedback.job_id) == job)).all()
    assert {(row.source, row.device_id, row.agronomist) for row in rows} == {(FARMER, device.id, None)}


def test_one_idempotency_key_is_one_piece_of_feedback(session: Session) -> None:
    job = classified_job(session)
    first, replayed = keyed_event_id(session, job, "fb-1", "a" * 64)
    assert replayed is False
    assert keyed_event_id(session, job, "fb-1", "a" * 64) == (first, True)
    with pytest.raises(IdempotencyConflict, match="other feedback"):
        keyed_event_id(session, job, "fb-1", "b" * 64)
    assert keyed_event_id(session, classified_job(session), "fb-1", "b" * 64)[1] is False  # keys are per photo


def photo(job_id: str, devices: frozenset[int] = frozenset()) -> LabelledPhoto:
    source = FARMER if devices else AGRONOMIST
    return LabelledPhoto(job_id=job_id, blob_key="", model_version="v1", predicted="cmd", confidence=0.9, label="cmd",
                         farmer_label=None, agronomist_label=None, labelled_at=utcnow(), label_source=source,
                         vouched_by=devices)  # fmt: skip


def test_no_device_is_behind_more_than_its_share_of_the_photos_kept() -> None:
    flood = [photo(f"a{n}", frozenset({1})) for n in range(40)]
    others = [photo(f"b{n}", frozenset({2 + n % 3})) for n in range(9)]  # three other devices, three each
    agronomists = [photo(f"c{n}") for n in range(6)]
    kept = share_capped(flood + others + agronomists, 0.2)
    behind = {device: sum(device in p.vouched_by for p in kept) for device in (1, 2, 3, 4)}
    assert behind == {1: 3, 2: 3, 3: 3, 4: 3}  # 3 of 18 each: the largest limit under which 0.2 holds
    assert all(count <= 0.2 * len(kept) for count in behind.values())
    assert [p.job_id for p in kept if not p.vouched_by] == [f"c{n}" for n in range(6)]  # agronomists' all kept
    assert share_capped(flood, 0.2) == []  # one device alone is all of any set it makes
    assert share_capped(flood + others, 1.0) == flood + others
    assert [p.job_id for p in capped(flood + others, "trusted", 2)][:3] == ["a0", "a1", "b0"]


def test_the_last_n_labels_hold_at_most_one_device_s_share(session: Session) -> None:
    config = Settings(FARMERS_TO_AGREE=1, MAX_DEVICE_SHARE=0.2)
    flood, _ = make_device(session, "flood")
    for _ in range(12):
        assert record_feedback(session, label_event(classified_job(session, device=flood), "cbb", FARMER, flood.id))
    assert len(recent_labels(session, config, "trusted", 10)) == 2  # 0.2 of 10: two of its twelve count
    for _ in range(8):
        assert record_feedback(session, event(classified_job(session), "cmd", AGRONOMIST))
    recent = recent_labels(session, config, "trusted", 10)
    assert sorted(str(p.label) for p in recent) == ["cbb"] * 2 + ["cmd"] * 8

"""The review queue (core.review): its stated order, double labelling and adjudication, undo, skips and leases, and
a refresh that reads only what is new."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from core import review
from core.blobs import BlobStore
from core.config import Settings
from core.feedback import record_feedback
from core.labels import decide, history
from schemas.errors import ReviewRefused
from schemas.tables import Device, ModelAlias, ModelAliasName, ModelVersion, ReviewItem, ReviewStatus, User
from tests.utils.factories import finished_job, label_event, make_device, make_person, sample_bytes


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    return Settings(HOME=tmp_path, REVIEW_AUDIT_SHARE=1.0, REVIEW_DOUBLE_SHARE=0.0)


@pytest.fixture
def device(session: Session) -> Device:
    return make_device(session)[0]


def people(session: Session, *names: str) -> list[User]:
    return [make_person(session, name)[0] for name in names]


def champion_with_gate(session: Session, threshold: float) -> None:
    session.add(ModelVersion(version="v1", sha256="s", blob_key="models/aa/x.pt", made_by="test",
                             metrics={"leaf_gate_threshold": threshold}))  # fmt: skip
    session.commit()
    session.add(ModelAlias(alias=ModelAliasName.CHAMPION, version="v1"))
    session.commit()


def test_the_queue_comes_in_the_stated_order_each_with_its_reason(
    session: Session, blobs: BlobStore, config: Settings, device: Device
) -> None:
    champion_with_gate(session, threshold=0.5)
    photo = [sample_bytes("cmd", i) for i in range(4)]
    confident = finished_job(session, blobs, device, "confident", {"cmd": 0.95, "cbb": 0.03, "healthy": 0.02},
                             data=photo[0])  # fmt: skip
    borderline = finished_job(session, blobs, device, "gate", {"cmd": 0.9, "cbb": 0.1}, leaf=0.55, data=photo[1])
    unsure = finished_job(session, blobs, device, "unsure", {"cmd": 0.48, "cbsd": 0.42, "healthy": 0.1},
                          data=photo[2])  # fmt: skip
    contested = finished_job(session, blobs, device, "contested", {"cmd": 0.92, "cgm": 0.08}, data=photo[3])
    assert review.refresh(session, config) == 4
    record_feedback(session, label_event(contested.id, "cgm", device_id=device.id))
    assert review.refresh(session, config) == 1  # the disagreement joins the contested photo's item
    [agronomist] = people(session, "amina")
    order = []
    while (item := review.next_item(session, config, blobs, agronomist)) is not None:
        order.append((item.job_id, [reason["code"] for reason in item.reasons]))
        review.answer(session, item.id or 0, agronomist, "cmd")
    assert order == [
        (contested.id, ["audit", "farmer_disagreed"]),
        (unsure.id, ["unsure"]),
        (borderline.id, ["gate_borderline"]),
        (confident.id, ["audit"]),
    ]
    item = session.exec(select(ReviewItem).where(ReviewItem.job_id == contested.id)).one()
    assert "A farmer said CGM; the model said CMD (0.92)" in item.reasons[1]["detail"]


def test_refresh_reads_only_what_is_new_and_makes_one_item_per_photo(
    session: Session, blobs: BlobStore, config: Settings, device: Device
) -> None:
    first = finished_job(session, blobs, device, "a", {"cmd": 0.5, "cbb": 0.45, "healthy": 0.05})
    assert review.refresh(session, config) == 1
    assert review.refresh(session, config) == 0
    again = finished_job(session, blobs, make_device(session, "other phone")[0], "b", {"cmd": 0.5, "cbb": 0.45,
                         "healthy": 0.05}, data=blobs.get(first.blob_key))  # fmt: skip
    assert again.content_sha256 == first.content_sha256
    assert review.refresh(session, config) == 0  # the same photo from another phone: the same item
    assert len(session.exec(select(ReviewItem)).all()) == 1


def test_two_agronomists_who_agree_decide_and_a_third_settles_a_disagreement(
    session: Session, blobs: BlobStore, tmp_path: Path, device: Device
) -> None:
    config = Settings(HOME=tmp_path, REVIEW_AUDIT_SHARE=1.0, REVIEW_DOUBLE_SHARE=1.0)
    agreed = finished_job(session, blobs, device, "agreed", data=sample_bytes("cbb", 1))
    split = finished_job(session, blobs, device, "split", data=sample_bytes("cbb", 2))
    review.refresh(session, config)
    amina, baraka, chausiku = people(session, "amina", "baraka", "chausiku")
    items = {i.job_id: i.id or 0 for i in session.exec(select(ReviewItem)).all()}
    review.answer(session, items[agreed.id], amina, "cmd")
    item, _ = review.answer(session, items[agreed.id], baraka, "cmd")
    assert (item.status, item.final_label) == (ReviewStatus.DONE, "cmd")
    review.answer(session, items[split.id], amina, "cmd")
    item, _ = review.answer(session, items[split.id], baraka, "cbsd")
    assert item.status == ReviewStatus.ADJUDICATION
    assert decide(history(session, split.content_sha256), 2).contested
    assert review.next_item(session, config, blobs, amina) is None  # she took part: not hers to decide
    third = review.next_item(session, config, blobs, chausiku)
    assert third is not None
    assert third.id == items[split.id]
    item, label = review.answer(session, items[split.id], chausiku, "cbsd")
    assert label is not None
    assert label.adjudicates
    assert (item.status, item.final_label) == (ReviewStatus.DONE, "cbsd")
    assert decide(history(session, split.content_sha256), 2).label == "cbsd"


def test_undo_retracts_the_label_and_reopens_the_item_for_its_agronomist(
    session: Session, blobs: BlobStore, config: Settings, device: Device
) -> None:
    job = finished_job(session, blobs, device, "x")
    review.refresh(session, config)
    [amina] = people(session, "amina")
    item = review.next_item(session, config, blobs, amina)
    assert item is not None
    done, label = review.answer(session, item.id or 0, amina, "healthy")
    assert done.status == ReviewStatus.DONE
    with pytest.raises(ReviewRefused):
        review.answer(session, item.id or 0, amina, "cmd")
    undone = review.undo(session, config, amina)
    assert undone is not None
    assert label is not None
    assert undone.id == label.id
    session.refresh(done)
    assert (done.status, done.final_label) == (ReviewStatus.OPEN, None)
    again = review.next_item(session, config, blobs, amina)
    assert again is not None
    assert again.id == item.id
    review.answer(session, item.id or 0, amina, "cmd")
    rows = history(session, job.content_sha256)
    assert [(row.label, row.retracted_at is not None) for row in rows] == [("healthy", True), ("cmd", False)]
    assert review.undo(session, config, make_person(session, "nobody")[0]) is None


def test_a_skip_is_not_handed_back_and_a_lease_keeps_two_agronomists_apart(
    session: Session, blobs: BlobStore, config: Settings, device: Device
) -> None:
    finished_job(session, blobs, device, "one", data=sample_bytes("cgm", 1))
    finished_job(session, blobs, device, "two", data=sample_bytes("cgm", 2))
    review.refresh(session, config)
    amina, baraka = people(session, "amina", "baraka")
    first = review.next_item(session, config, blobs, amina)
    second = review.next_item(session, config, blobs, baraka)
    assert first is not None
    assert second is not None
    assert first.id != second.id  # the first is leased to amina
    review.answer(session, first.id or 0, amina, None)  # skipped: no longer hers, free for others
    following = review.next_item(session, config, blobs, amina)
    assert following is None or following.id != first.id
    assert review.counts(session, baraka).left_for_you == 2

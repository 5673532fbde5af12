"""The one rule that decides a photo's training label from its history (core.labels), and the base data's photos
entering that history as curated labels."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from core.blobs import BlobStore
from core.labels import add_label, decide, decisions, history, import_curated, retract
from schemas.tables import LabelSource, PhotoLabel, utcnow

START = utcnow()


def said(label: str, source: LabelSource, minute: int, user: int | None = None, device: int | None = None,
         adjudicates: bool = False) -> PhotoLabel:  # fmt: skip
    return PhotoLabel(photo_sha256="p", label=label, source=source, user_id=user, device_id=device,
                      adjudicates=adjudicates, created_at=START + timedelta(minutes=minute))  # fmt: skip


FARMER, AGRONOMIST, CURATED = LabelSource.FARMER, LabelSource.AGRONOMIST, LabelSource.CURATED


def test_farmers_count_once_per_device_and_must_agree() -> None:
    one_phone_twice = [said("cmd", FARMER, 1, device=1), said("cmd", FARMER, 2, device=1)]
    assert decide(one_phone_twice, farmers_to_agree=2).label is None
    two_phones = [*one_phone_twice, said("cmd", FARMER, 3, device=2)]
    assert (decide(two_phones, 2).label, decide(two_phones, 2).devices) == ("cmd", frozenset({1, 2}))
    a_third_says_otherwise = [*two_phones, said("cbb", FARMER, 4, device=3)]
    assert decide(a_third_says_otherwise, 2).label is None
    changed_their_mind = [*two_phones, said("cbb", FARMER, 4, device=3), said("cmd", FARMER, 5, device=3)]
    assert decide(changed_their_mind, 2).label == "cmd"


def test_curated_beats_farmers_and_an_agronomist_beats_both() -> None:
    farmers = [said("cmd", FARMER, 1, device=1), said("cmd", FARMER, 2, device=2)]
    assert decide([*farmers, said("cbb", CURATED, 0)], 2).source == CURATED
    decision = decide([*farmers, said("cbb", CURATED, 0), said("healthy", AGRONOMIST, 3, user=9)], 2)
    assert (decision.label, decision.source, decision.users) == ("healthy", AGRONOMIST, frozenset({9}))


def test_agronomists_who_disagree_leave_it_contested_until_a_third_decides() -> None:
    two = [said("cmd", AGRONOMIST, 1, user=1), said("cgm", AGRONOMIST, 2, user=2)]
    contested = decide(two, 2)
    assert (contested.label, contested.contested) == (None, True)
    assert decide([*two, said("cgm", AGRONOMIST, 3, user=3, adjudicates=True)], 2).label == "cgm"
    assert decide([*two, said("cmd", AGRONOMIST, 3, user=1)], 2).contested  # one repeating themself decides nothing


def test_a_retracted_label_is_kept_but_no_longer_counts(session: Session) -> None:
    first = add_label(session, PhotoLabel(photo_sha256="q", label="cmd", source=AGRONOMIST, user_id=None))
    session.commit()
    assert first.id is not None
    assert not retract(session, first.id, user_id=5)  # not theirs
    assert decide(history(session, "q"), 2).label == "cmd"
    with pytest.raises(ValueError, match="not one of"):
        add_label(session, PhotoLabel(photo_sha256="q", label="banana", source=AGRONOMIST))


def test_the_base_data_enters_the_history_once_as_curated_labels(session: Session, blobs: BlobStore,
                                                                  samples: Path) -> None:  # fmt: skip
    added = import_curated(session, blobs, samples)
    photos = sum(1 for p in samples.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    assert added == photos
    assert import_curated(session, blobs, samples) == 0
    found = list(decisions(session, farmers_to_agree=2, page=7))  # several pages
    assert len(found) == photos
    some = next(photo for photo in found if photo.decision.label == "cbb")
    assert some.blob_key is not None
    assert hashlib.sha256(blobs.get(some.blob_key)).hexdigest() == some.photo_sha256
    assert {photo.decision.source for photo in found} == {CURATED}
    assert sum(photo.decision.label == "not_cassava" for photo in found) == len(list((samples / "negatives").iterdir()))

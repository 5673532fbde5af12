"""Cohen's kappa between agronomists (core.agreement), against figures worked out by hand."""

from __future__ import annotations

from sqlmodel import Session

from core.agreement import agreement, kappa
from schemas.tables import LabelSource, PhotoLabel, ReviewItem, User
from tests.utils.factories import make_person


def test_kappa_by_hand() -> None:
    # 4 items: agree on 3 (p_o = 0.75); rater A says x 2/4, y 2/4; B says x 1/4, y 3/4: p_e = .5*.25 + .5*.75 = 0.5
    assert kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == 0.5
    assert kappa(["x", "y", "x"], ["x", "y", "x"]) == 1.0
    assert kappa(["x", "y"], ["x", "y"]) is None  # fewer than three items: not enough to tell


def label(session: Session, item: int, user: User, said: str, adjudicates: bool = False) -> None:
    session.add(PhotoLabel(photo_sha256=f"p{item}", item_id=item, label=said, source=LabelSource.AGRONOMIST,
                           user_id=user.id, adjudicates=adjudicates))  # fmt: skip
    session.commit()


def test_agreement_per_agronomist_and_per_class_from_double_labelled_items(session: Session) -> None:
    amina, baraka, chausiku = (make_person(session, name)[0] for name in ("amina", "baraka", "chausiku"))
    pairs = [("cmd", "cmd"), ("cmd", "cbsd"), ("healthy", "healthy"), ("cbsd", "cbsd")]
    for n, (a, b) in enumerate(pairs, start=1):
        session.add(ReviewItem(id=n, photo_sha256=f"p{n}", blob_key="x", labels_needed=2))
        session.commit()
        label(session, n, amina, a)
        label(session, n, baraka, b)
    label(session, 2, chausiku, "cbsd", adjudicates=True)  # the adjudicator never counts
    session.add(ReviewItem(id=9, photo_sha256="p9", blob_key="x", labels_needed=1))  # single: never counts
    session.commit()
    label(session, 9, amina, "cgm")
    found = agreement(session)
    assert (found["items"], found["agreed"]) == (4, 3)
    # amina: cmd cmd healthy cbsd; baraka: cmd cbsd healthy cbsd. p_o = 3/4; p_e = (2*1 + 1*1 + 1*2)/16 = 5/16
    assert found["kappa"] == round((0.75 - 5 / 16) / (1 - 5 / 16), 3)
    assert found["per_agronomist"]["amina"] == {"kappa": found["kappa"], "items": 4}
    assert "chausiku" not in found["per_agronomist"]
    # cmd against the rest: amina T T F F, baraka T F F F: p_o = 3/4, p_e = (.5*.25 + .5*.75) = .5 -> 0.5
    assert found["per_class"]["cmd"]["kappa"] == 0.5

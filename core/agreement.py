"""How far agronomists agree, as Cohen's kappa: agreement beyond what chance alone would give (1 perfect, 0 chance,
below 0 worse than chance). Read from the items two agronomists labelled independently (the review queue's double
share): the first two live labels of distinct agronomists on each item, the adjudicator's never counted.

- overall: over every such pair;
- per agronomist: their label against the other one's, on the items they shared;
- per class: that class against the rest (did both say "CMD" or both "not CMD"), over every pair.

A figure resting on fewer than MIN_PAIRS items, or where one side never varies, is None: not enough to tell.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sklearn.metrics import cohen_kappa_score
from sqlmodel import Session, col, select

from core.labels import ANSWERS
from schemas.tables import PhotoLabel, ReviewItem, User

MIN_PAIRS = 3
Pair = tuple[str, str, str, str]  # first agronomist, their label, second agronomist, their label


def kappa(first: Sequence[object], second: Sequence[object]) -> float | None:
    if len(first) < MIN_PAIRS:
        return None
    if len(set(first) | set(second)) < 2:
        return 1.0  # everyone always said the same one thing: they agree, and chance does not enter
    value = float(cohen_kappa_score(list(first), list(second)))
    return None if math.isnan(value) else round(value, 3)


def pairs(session: Session) -> list[Pair]:
    rows = session.exec(
        select(PhotoLabel, User)
        .join(ReviewItem, col(ReviewItem.id) == col(PhotoLabel.item_id))
        .join(User, col(User.id) == col(PhotoLabel.user_id))
        .where(col(ReviewItem.labels_needed) == 2, col(PhotoLabel.retracted_at).is_(None))
        .where(col(PhotoLabel.adjudicates).is_(False))
        .order_by(col(PhotoLabel.item_id), col(PhotoLabel.created_at), col(PhotoLabel.id))
    ).all()
    by_item: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for label, user in rows:
        said = by_item[label.item_id or 0]
        if len(said) < 2 and all(name != user.name for name, _ in said):
            said.append((user.name, label.label))
    return [(a, la, b, lb) for (a, la), (b, lb) in (said for said in by_item.values() if len(said) == 2)]


def agreement(session: Session) -> dict[str, Any]:
    found = pairs(session)
    first, second = [p[1] for p in found], [p[3] for p in found]
    people: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for a, la, b, lb in found:
        for me, mine, other in ((a, la, lb), (b, lb, la)):
            people[me][0].append(mine)
            people[me][1].append(other)
    per_class = {}
    for answer in ANSWERS:
        if answer in first or answer in second:
            per_class[answer] = {"kappa": kappa([x == answer for x in first], [x == answer for x in second]),
                                 "items": len(found)}  # fmt: skip
    return {
        "items": len(found),
        "agreed": sum(x == y for x, y in zip(first, second, strict=True)),
        "kappa": kappa(first, second),
        "per_agronomist": {
            name: {"kappa": kappa(mine, other), "items": len(mine)} for name, (mine, other) in sorted(people.items())
        },
        "per_class": per_class,
        "min_items": MIN_PAIRS,
    }

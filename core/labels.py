"""The label history of photos (schemas.tables.PhotoLabel) and the one rule that decides the label a photo trains
with.

Labels are history, not overwrites: every label a device, an agronomist or the curated set gave is a row, and an
agronomist's undo only marks theirs retracted. From a photo's live (not retracted) labels, `decide` takes, first
that applies:

1. an adjudication: the deciding label of a third agronomist where two disagreed (the latest, if ever several);
2. the agronomists': each agronomist's latest label; when they all say the same, that; when they differ, nothing
   (the photo waits for adjudication);
3. the curated set's label (the base data's folders);
4. the farmers': each device's latest word; when at least `farmers_to_agree` devices say the same and none says
   otherwise, that.

So an agronomist's word beats the curated folder and any number of farmers, and one phone saying something twice is
still one farmer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.blobs import BlobStore
from schemas.labels import LABELS
from schemas.tables import LabelSource, PhotoLabel, utcnow

NOT_CASSAVA = "not_cassava"  # the photo is not of a cassava leaf: it teaches the leaf gate
UNUSABLE = "unusable"  # too blurred, dark or cut off to say: left out of every dataset
ANSWERS: tuple[str, ...] = (*(label.value for label in LABELS), NOT_CASSAVA, UNUSABLE)


@dataclass(frozen=True)
class Decision:
    """The label a photo trains with, if any, whose word it is, and who gave it (user ids, device ids)."""

    label: str | None
    source: LabelSource | None
    users: frozenset[int] = frozenset()
    devices: frozenset[int] = frozenset()
    contested: bool = False  # agronomists disagree and no one has decided yet


NO_LABEL = Decision(None, None)


def _latest_per(rows: Sequence[PhotoLabel], key: str) -> dict[int | None, PhotoLabel]:
    latest: dict[int | None, PhotoLabel] = {}
    for row in rows:  # oldest first: a later word replaces an earlier one of the same person or device
        latest[getattr(row, key)] = row
    return latest


def decide(rows: Sequence[PhotoLabel], farmers_to_agree: int) -> Decision:
    """The label one photo's history gives it (the rule in the module's docstring)."""
    live = sorted((row for row in rows if row.retracted_at is None), key=lambda row: (row.created_at, row.id or 0))
    adjudications = [row for row in live if row.adjudicates]
    if adjudications:
        last = adjudications[-1]
        return Decision(last.label, LabelSource.AGRONOMIST, frozenset({last.user_id}) if last.user_id else frozenset())
    agronomists = _latest_per([row for row in live if row.source == LabelSource.AGRONOMIST], "user_id")
    if agronomists:
        said = {row.label for row in agronomists.values()}
        users = frozenset(user for user in agronomists if user is not None)
        if len(said) == 1:
            return Decision(said.pop(), LabelSource.AGRONOMIST, users)
        return Decision(None, None, users, contested=True)
    curated = [row for row in live if row.source == LabelSource.CURATED]
    if curated:
        return Decision(curated[-1].label, LabelSource.CURATED)
    farmers = _latest_per([row for row in live if row.source == LabelSource.FARMER], "device_id")
    said = {row.label for row in farmers.values()}
    if len(said) == 1 and len(farmers) >= farmers_to_agree:
        devices = frozenset(device for device in farmers if device is not None)
        return Decision(said.pop(), LabelSource.FARMER, devices=devices)
    return NO_LABEL


def add_label(session: Session, label: PhotoLabel) -> PhotoLabel:
    """Append one label to the history (the caller commits). A label outside ANSWERS is a programming error."""
    if label.label not in ANSWERS:
        raise ValueError(f"{label.label!r} is not one of {', '.join(ANSWERS)}")
    session.add(label)
    return label


def retract(session: Session, label_id: int, user_id: int) -> bool:
    """An agronomist's undo of their own label: marked retracted, never deleted. False when it is not theirs or
    was retracted already."""
    statement = (
        update(PhotoLabel)
        .where(
            col(PhotoLabel.id) == label_id, col(PhotoLabel.user_id) == user_id, col(PhotoLabel.retracted_at).is_(None)
        )
        .values(retracted_at=utcnow())
    )
    changed = session.execute(statement).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def history(session: Session, photo_sha256: str) -> list[PhotoLabel]:
    """Every label the photo was given, oldest first, retracted ones included."""
    statement = select(PhotoLabel).where(col(PhotoLabel.photo_sha256) == photo_sha256)
    return list(session.exec(statement.order_by(col(PhotoLabel.created_at), col(PhotoLabel.id))).all())


@dataclass(frozen=True)
class LabelledPhoto:
    """A photo with its history's decision, and where its bytes are (the newest row that says)."""

    photo_sha256: str
    blob_key: str | None
    job_id: str | None
    decision: Decision
    rows: tuple[PhotoLabel, ...]


def decisions(session: Session, farmers_to_agree: int, page: int = 2000) -> Iterator[LabelledPhoto]:
    """Every photo that has any label, with its decision, a page of photos at a time (by content hash)."""
    after = ""
    while True:
        hashes = list(
            session.exec(
                select(col(PhotoLabel.photo_sha256))
                .where(col(PhotoLabel.photo_sha256) > after)
                .group_by(col(PhotoLabel.photo_sha256))
                .order_by(col(PhotoLabel.photo_sha256))
                .limit(page)
            ).all()
        )
        if not hashes:
            return
        rows: dict[str, list[PhotoLabel]] = {sha: [] for sha in hashes}
        statement = select(PhotoLabel).where(col(PhotoLabel.photo_sha256).in_(hashes))
        for row in session.exec(statement.order_by(col(PhotoLabel.created_at), col(PhotoLabel.id))).all():
            rows[row.photo_sha256].append(row)
        for sha in hashes:
            history_rows = rows[sha]
            located = [row for row in history_rows if row.blob_key]
            job = next((row.job_id for row in reversed(history_rows) if row.job_id), None)
            yield LabelledPhoto(sha, located[-1].blob_key if located else None, job,
                                decide(history_rows, farmers_to_agree), tuple(history_rows))  # fmt: skip
        after = hashes[-1]


CURATED_NAMESPACE = "curated"  # the blob store's folder of the base data's photos


def import_curated(session: Session, blobs: BlobStore, data_dir: Path) -> int:
    """The base data set's photos (`DIR/cassava/<class>/`, and `DIR/negatives/` as not_cassava) into the blob store
    and the label history as curated labels; photos imported before are not added again. The number added."""
    from ml.data import negatives_beside, scan

    classes = [label.value for label in LABELS]
    samples = [(s.path, classes[s.label]) for s in scan(data_dir, classes)]
    samples += [(s.path, NOT_CASSAVA) for s in negatives_beside(data_dir)]
    known = set(session.exec(select(col(PhotoLabel.photo_sha256)).where(col(PhotoLabel.source) == LabelSource.CURATED)))
    added = 0
    for path, label in samples:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if sha in known:
            continue
        key = blobs.put(CURATED_NAMESPACE, data, path.suffix.lower() or ".jpg")
        add_label(session, PhotoLabel(photo_sha256=sha, blob_key=key, label=label, source=LabelSource.CURATED))
        known.add(sha)
        added += 1
    session.commit()
    return added

"""`mhogo review audit-labels` (core.label_audit) on real photos and the shipped model: a training photo given
the wrong class is put in the review queue, each with what its label is and what the features say instead."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from core.blobs import BlobStore
from core.config import Settings
from core.label_audit import audit_labels
from core.labels import history, import_curated
from core.review import next_item
from schemas.tables import LabelSource, PhotoLabel, ReviewItem
from tests.utils.factories import make_person


def few(samples: Path, out: Path, per_class: int = 5) -> Path:
    """Five photos of each class: enough for five folds, and a run of a few seconds with the shipped model."""
    for folder in sorted((samples / "cassava").iterdir()):
        (out / "cassava" / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:per_class]:
            (out / "cassava" / folder.name / photo.name).symlink_to(photo)
    return out


def test_labels_flipped_on_purpose_are_queued_as_probably_mislabelled(
    sqlite_engine: object, blobs: BlobStore, samples: Path, tmp_path: Path
) -> None:
    config = Settings(HOME=tmp_path)
    with Session(sqlite_engine) as session:  # type: ignore[arg-type]
        import_curated(session, blobs, few(samples, tmp_path / "data"))
        curated = {row.photo_sha256: row for row in session.exec(select(PhotoLabel)).all()}
        healthy = sorted(sha for sha, row in curated.items() if row.label == "healthy")[:1]
        amina = make_person(session, "amina")[0]
        for sha in healthy:  # an agronomist's wrong label beats the curated one, so it is what trains
            session.add(PhotoLabel(photo_sha256=sha, blob_key=curated[sha].blob_key, label="cbb",
                                   source=LabelSource.AGRONOMIST, user_id=amina.id))  # fmt: skip
        session.commit()
        found = audit_labels(session, config, blobs)
        assert found.checked == sum(row.label != "not_cassava" for row in curated.values())
        assert set(healthy) <= set(found.flagged)
        assert len(found.flagged) <= 3  # a couple of honest doubts at most besides
        items = session.exec(select(ReviewItem)).all()
        flipped = next(item for item in items if item.photo_sha256 == healthy[0])
        [reason] = flipped.reasons
        assert reason["code"] == "probably_mislabelled"
        assert reason["detail"].startswith("Labelled CBB for training (agronomist); a model that never saw this label "
                                           "says HEALTHY")  # fmt: skip
        baraka = make_person(session, "baraka")[0]
        first = next_item(session, config, blobs, baraka)
        assert first is not None
        assert first.reasons[0]["code"] == "probably_mislabelled"
        assert len(history(session, healthy[0])) == 2

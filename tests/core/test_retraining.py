"""The dataset a retraining run builds from the base photos and the feedback: what goes in, what is held out for
evaluation, and what is left out and why. Real sample photos, a real blob store, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col

from core import jobs, retention
from core.blobs import BlobStore
from core.config import Settings
from core.feedback import record_feedback
from core.retraining import build_dataset, held_out
from ml.data import scan
from schemas.findings import Finding
from schemas.labels import LABELS
from schemas.tables import FeedbackSource, Job, utcnow
from schemas.tasks import FeedbackEvent
from tests.utils.factories import SAMPLES, make_device, make_job, sample_photo

CLASSES = [label.value for label in LABELS]
AGRONOMIST, FARMER = FeedbackSource.AGRONOMIST, FeedbackSource.FARMER


def laid_out(root: Path, index: int) -> Path:
    """A data folder like ../shared/data holding the sample photo `index` of every class."""
    for name in CLASSES:
        (root / "cassava" / name).mkdir(parents=True)
        (root / "cassava" / name / f"{name}-{index}.jpg").symlink_to(sample_photo(name, index))
    return root


def photo_with_feedback(
    session: Session, blobs: BlobStore, photo: Path, labels: list[tuple[str, FeedbackSource]]
) -> str:
    device, _ = make_device(session)
    data = photo.read_bytes()
    job = make_job(session, device, key=uuid.uuid4().hex, data=data)
    assert blobs.put("photos", data, ".jpg") == job.blob_key
    jobs.finish(session, job.id, Finding(label="cmd", model_version="v1"))
    for label, source in labels:
        event = FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job.id, label=label, source=source, created_at=utcnow())
        record_feedback(session, event)
    return job.id


def test_trusted_feedback_joins_the_base_data_and_the_rest_is_left_out_with_reasons(
    session: Session, blobs: BlobStore, tmp_path: Path
) -> None:
    base = laid_out(tmp_path / "base", 0)
    (base / "negatives").symlink_to(SAMPLES / "negatives", target_is_directory=True)
    holdout = laid_out(tmp_path / "holdout", 1)
    trusted = [
        photo_with_feedback(session, blobs, sample_photo("cmd", 4), [("cbsd", AGRONOMIST)]),
        photo_with_feedback(session, blobs, sample_photo("cbb", 4), [("cbb", FARMER), ("cbb", FARMER)]),
        photo_with_feedback(session, blobs, sample_photo("healthy", 5), [("healthy", AGRONOMIST)]),
        photo_with_feedback(session, blobs, sample_photo("cgm", 6), [("cmd", FARMER), ("cgm", AGRONOMIST)]),
    ]
    photo_with_feedback(session, blobs, sample_photo("cbsd", 4), [("cbsd", FARMER)])  # one farmer's word
    photo_with_feedback(session, blobs, sample_photo("cgm", 4), [("cgm", FARMER), ("cmd", FARMER)])  # disagree
    photo_with_feedback(session, blobs, sample_photo("healthy", 1), [("healthy", AGRONOMIST)])  # a holdout photo
    photo_with_feedback(session, blobs, sample_photo("cmd", 0), [("cmd", AGRONOMIST)])  # already a base photo
    photo_with_feedback(session, blobs, sample_photo("cmd", 5), [("cmd", AGRONOMIST)])  # the same photo twice,
    photo_with_feedback(session, blobs, sample_photo("cmd", 5), [("cbsd", AGRONOMIST)])  # with two labels
    photo_with_feedback(session, blobs, sample_photo("healthy", 5), [("healthy", AGRONOMIST)])  # sent twice

    config = Settings(FEEDBACK_HOLDOUT_SHARE=0.5, FARMERS_TO_AGREE=2)
    built = build_dataset(session, blobs, config, base, tmp_path / "run", holdout)

    assert built.left_out == {
        "no trusted label (one farmer's word, or farmers disagree)": 2,
        "near-duplicate of a holdout photo": 1,
        "near-duplicate of a base photo": 1,
        "near-duplicates with conflicting labels": 2,
        "near-duplicate of another feedback photo": 1,
    }
    assert built.base_photos == 5
    assert built.added + built.held_out == 4
    training = {p.path.name: CLASSES[p.label] for p in scan(built.train_dir, CLASSES)}
    evaluation = {p.path.name: CLASSES[p.label] for p in scan(built.eval_dir, CLASSES)} if built.eval_dir else {}
    assert len(training) == 5 + built.added
    assert len(evaluation) == built.held_out
    for job_id, label in zip(trusted, ["cbsd", "cbb", "healthy", "cgm"], strict=True):
        side = evaluation if held_out(job_id, 0.5) else training
        assert side[f"feedback-{job_id}.jpg"] == label  # agronomist over farmer; agreeing farmers
    assert (built.train_dir / "negatives").resolve() == (SAMPLES / "negatives").resolve()


def test_the_evaluation_share_is_fixed_per_photo() -> None:
    """The side of a photo is a function of its job id alone, the same in every process and run (a salted hash such
    as Python's hash() would pass a same-process comparison): pinned values, and the share asked for."""
    ids = [f"{n:032x}" for n in range(2000)]
    assert [held_out(i, 0.3) for i in ids[:12]] == [False] * 3 + [True, False, True] + [False] * 6
    assert sum(held_out(i, 0.3) for i in ids) / len(ids) == 0.3075


def test_a_photo_labelled_after_retention_deleted_it_is_left_out_with_its_reason(
    session: Session, blobs: BlobStore, tmp_path: Path
) -> None:
    """A farmer may label a photo months old: its file may be gone (core.retention), and the run goes on without it
    instead of failing on the missing file."""
    base = laid_out(tmp_path / "base", 0)
    kept = photo_with_feedback(session, blobs, sample_photo("cbb", 4), [("cbb", AGRONOMIST)])
    late = photo_with_feedback(session, blobs, sample_photo("cmd", 4), [])
    session.execute(update(Job).where(col(Job.id) == late).values(created_at=utcnow() - timedelta(days=100)))
    session.commit()
    passed = retention.run_pass(lambda: Session(session.get_bind()), blobs, Settings(HOME=tmp_path), utcnow())
    assert passed.counts["photo_files"] == 1
    label_late = FeedbackEvent(event_id=uuid.uuid4().hex, job_id=late, label="cmd", source=AGRONOMIST,
                               created_at=utcnow())  # fmt: skip
    assert record_feedback(session, label_late)

    built = build_dataset(session, blobs, Settings(FEEDBACK_HOLDOUT_SHARE=0.0), base, tmp_path / "run", None)

    assert built.left_out == {"photo deleted by retention before it was labelled": 1}
    assert [p.path.name for p in scan(built.train_dir, CLASSES) if p.path.name.startswith("feedback")] == [
        f"feedback-{kept}.jpg"]  # fmt: skip

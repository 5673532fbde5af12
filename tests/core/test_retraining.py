"""The dataset a retraining run builds from the base photos and the feedback: what goes in, what is held out for
evaluation, and what is left out and why. Real sample photos, a real blob store, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from core import jobs, registry, retention, triggers
from core.blobs import BlobStore
from core.config import Settings
from core.feedback import record_feedback
from core.retraining import FARMERS_DO_NOT_JUDGE, NO_HOLDOUT, OVER_DEVICE_SHARE, _decide, build_dataset, held_out
from ml.data import scan
from schemas.findings import Finding
from schemas.labels import LABELS
from schemas.tables import Device, FeedbackSource, Job, ModelAliasName, ModelVersion, RetrainRun, RetrainStatus, utcnow
from tests.utils.factories import SAMPLES, label_event, make_device, make_job, sample_photo

CLASSES = [label.value for label in LABELS]
AGRONOMIST, FARMER = FeedbackSource.AGRONOMIST, FeedbackSource.FARMER


def laid_out(root: Path, index: int) -> Path:
    """A data folder like ../shared/data holding the sample photo `index` of every class."""
    for name in CLASSES:
        (root / "cassava" / name).mkdir(parents=True)
        (root / "cassava" / name / f"{name}-{index}.jpg").symlink_to(sample_photo(name, index))
    return root


def photo_with_feedback(
    session: Session,
    blobs: BlobStore,
    photo: Path,
    labels: list[tuple[str, FeedbackSource]],
    farmers: list[Device] | None = None,
) -> str:
    """A classified photo and its labels: agronomists', and farmers', each farmer's from a phone of their own (the
    next of `farmers`, or a new one)."""
    device, _ = make_device(session)
    data = photo.read_bytes()
    job = make_job(session, device, key=uuid.uuid4().hex, data=data)
    assert blobs.put("photos", data, ".jpg") == job.blob_key
    jobs.finish(session, job.id, Finding(label="cmd", model_version="v1"))
    phones = iter(farmers or [])
    for label, source in labels:
        farmer = (next(phones, None) or make_device(session)[0]) if source == FARMER else None
        record_feedback(session, label_event(job.id, label, source, farmer.id if farmer else None))
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

    config = Settings(FEEDBACK_HOLDOUT_SHARE=0.5, FARMERS_TO_AGREE=2, MAX_DEVICE_SHARE=1.0)
    built = build_dataset(session, blobs, config, base, tmp_path / "run", holdout)
    judging_farmers = held_out(trusted[1], 0.5)  # the farmers' photo: on the judging side it is left out

    assert built.left_out == {
        "no trusted label (one farmer's word, or farmers disagree)": 2,
        "near-duplicate of a holdout photo": 1,
        "near-duplicate of a base photo": 1,
        "near-duplicates with conflicting labels": 2,
        "near-duplicate of another feedback photo": 1,
    } | ({FARMERS_DO_NOT_JUDGE: 1} if judging_farmers else {})
    assert built.base_photos == 5
    assert built.added + built.held_out == 4 - judging_farmers
    training = {p.path.name: CLASSES[p.label] for p in scan(built.train_dir, CLASSES)}
    evaluation = {p.path.name: CLASSES[p.label] for p in scan(built.eval_dir, CLASSES)} if built.eval_dir else {}
    assert len(training) == 5 + built.added
    assert len(evaluation) == built.held_out
    for job_id, label in zip(trusted, ["cbsd", "cbb", "healthy", "cgm"], strict=True):
        side = evaluation if held_out(job_id, 0.5) else training
        if job_id != trusted[1] or not judging_farmers:
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
    assert record_feedback(session, label_event(late, "cmd", AGRONOMIST))

    built = build_dataset(session, blobs, Settings(FEEDBACK_HOLDOUT_SHARE=0.0), base, tmp_path / "run", None)

    assert built.left_out == {"photo deleted by retention before it was labelled": 1}
    assert [p.path.name for p in scan(built.train_dir, CLASSES) if p.path.name.startswith("feedback")] == [
        f"feedback-{kept}.jpg"]  # fmt: skip


def test_only_agronomists_labels_judge_and_the_farmers_held_out_ones_are_left_out(
    session: Session, blobs: BlobStore, tmp_path: Path
) -> None:
    """Promotion is judged on curated or agronomist-labelled photos: held-out farmers' labels judged before."""
    base = laid_out(tmp_path / "base", 0)
    agronomists = photo_with_feedback(session, blobs, sample_photo("cbb", 4), [("cbb", AGRONOMIST)])
    photo_with_feedback(session, blobs, sample_photo("cgm", 4), [("cgm", FARMER), ("cgm", FARMER)])  # two farmers
    config = Settings(FEEDBACK_HOLDOUT_SHARE=1.0, FARMERS_TO_AGREE=2)
    built = build_dataset(session, blobs, config, base, tmp_path / "run", None)
    assert (built.added, built.held_out, built.left_out) == (0, 1, {FARMERS_DO_NOT_JUDGE: 1})
    assert built.eval_dir is not None
    assert [p.path.name for p in scan(built.eval_dir, CLASSES)] == [f"feedback-{agronomists}.jpg"]


def test_one_device_is_behind_at_most_its_share_of_the_feedback_photos_added(
    session: Session, blobs: BlobStore, tmp_path: Path
) -> None:
    """With farmers trusted on one device's word, one phone's labels were every feedback photo a run added."""
    base = laid_out(tmp_path / "base", 0)
    flood, _ = make_device(session, "one phone")
    flooded = [photo_with_feedback(session, blobs, sample_photo(kind, 5), [("cmd", FARMER)], [flood])
               for kind in ("cbb", "cbsd", "cgm", "healthy")]  # fmt: skip
    agronomists = [photo_with_feedback(session, blobs, sample_photo(kind, 6), [(kind, AGRONOMIST)])
                   for kind in ("cbb", "cbsd", "cgm", "cmd")]  # fmt: skip
    config = Settings(FEEDBACK_HOLDOUT_SHARE=0.0, FARMERS_TO_AGREE=1, MAX_DEVICE_SHARE=0.2)
    built = build_dataset(session, blobs, config, base, tmp_path / "run", None)
    added = {p.path.name for p in scan(built.train_dir, CLASSES) if p.path.name.startswith("feedback-")}
    assert added == {f"feedback-{job}.jpg" for job in [flooded[0], *agronomists]}  # 1 of 5: its share, no more
    assert (built.added, built.left_out) == (5, {OVER_DEVICE_SHARE: 3})


def judged(accuracy: float, sets: tuple[str, ...]) -> dict[str, Any]:
    figures = {"photos": 20, "accuracy": accuracy, "recall": {name: accuracy for name in CLASSES}}
    return {"version": "v", "pooled": figures} | {name: figures for name in sets}


@pytest.mark.parametrize("sets", [(), ("feedback",)])
def test_without_a_holdout_the_challenger_is_kept_however_well_it_did(session: Session, sets: tuple[str, ...]) -> None:
    """Judged on held-out feedback alone, a challenger that beat the champion there was promoted."""
    champion, challenger = (ModelVersion(version=v, sha256="0" * 64, blob_key=f"models/{v}.pt", made_by="test")
                            for v in ("champion-v1", "challenger-v2"))  # fmt: skip
    session.add_all([champion, challenger, RetrainRun(rule="operator", fired_by="ops", status=RetrainStatus.RUNNING)])
    session.commit()
    registry.set_alias(session, ModelAliasName.CHAMPION, champion.version, "test")
    run = triggers.last_run(session)
    assert run is not None
    figures = {"champion": judged(0.2, sets), "challenger": judged(0.9, sets)} if sets else {}
    decided = _decide(session, Settings(), run, champion.version, challenger, figures, None)  # type: ignore[arg-type]
    assert (decided.status, decided.decision) == (RetrainStatus.KEPT, NO_HOLDOUT)
    assert registry.alias_version(session, ModelAliasName.CHAMPION) == champion.version


def test_with_a_holdout_the_gate_decides(session: Session) -> None:
    session.add(RetrainRun(rule="operator", fired_by="ops", status=RetrainStatus.RUNNING))
    session.commit()
    run = triggers.last_run(session)
    assert run is not None
    figures = {"champion": judged(0.5, ("holdout",)), "challenger": judged(0.51, ("holdout",))}
    challenger = ModelVersion(version="challenger-v2", sha256="0" * 64, blob_key="models/c.pt", made_by="test")
    decided = _decide(session, Settings(), run, "champion-v1", challenger, figures, None)  # type: ignore[arg-type]
    assert decided.status == RetrainStatus.KEPT
    assert decided.decision == "accuracy 0.510 vs champion 0.500: gain +0.010 below the +0.020 required"


def test_a_run_on_a_chosen_dataset_version_trains_on_it_and_records_it(
    sqlite_engine: Any, blobs: BlobStore, tmp_path: Path
) -> None:
    """`mhogo retrain --dataset VERSION`: the run exports the version, trains on its train split (a dry run here),
    and the run and the challenger both name the version; its holdout split judges beside the frozen holdout."""
    from core.datasets import snapshot
    from core.labels import import_curated
    from core.retraining import run_retraining
    from schemas.tables import LabelSource, PhotoLabel
    from tests.utils.models import tiny_model

    session = Session(sqlite_engine)  # one database is enough: training is the slow part, and it is the same

    config = Settings(HOME=tmp_path / "home", RETRAIN_DRY_RUN=True, TRAIN_DATA_DIR=SAMPLES, DATASET_HOLDOUT_SHARE=1.0)
    import_curated(session, blobs, SAMPLES)
    held = sample_photo("cmd", 9).read_bytes()  # an agronomist's label on a photo of the field: the holdout grows
    key = blobs.put("photos", held, ".jpg")
    session.add(PhotoLabel(photo_sha256=key.split("/")[-1][:64], blob_key=key, label="cbsd",
                           source=LabelSource.AGRONOMIST))  # fmt: skip
    session.commit()
    version = snapshot(session, blobs, config, "test")
    run = RetrainRun(rule="operator", figures={"dataset_version": version.id}, fired_by="test")
    session.add(run)
    session.commit()
    assert run.id is not None
    done = run_retraining(session, blobs, config, run.id, threads=1, seed_model=tiny_model(tmp_path))
    assert done.dataset_version == version.id
    assert done.status == RetrainStatus.KEPT  # no frozen holdout: never promoted
    challenger = session.get(ModelVersion, done.challenger_version)
    assert challenger is not None
    assert challenger.dataset_version == version.id
    assert done.dataset["feedback_held_out"] == 1
    assert set(done.evaluation["sets"]) == {"feedback"}

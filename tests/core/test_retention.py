"""Retention on SQLite and PostgreSQL with a real blob store: what is past its time goes, rows and files; what the rules
keep stays (photos with trusted labels, the models that served, the challenger, recent data, the base data a run's
folder links to); a dry run counts what a run then deletes; a second run deletes nothing more; no pass deletes more
than a batch of anything."""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from core import jobs, registry, retention, uploads
from core.blobs import BlobStore
from core.config import Settings
from core.feedback import record_feedback, trusted_jobs, trusted_label
from core.serving import BUILD_NAMESPACES, build_key
from schemas.errors import RegistryError
from schemas.findings import Finding
from schemas.reasons import RejectReason
from schemas.tables import (
    ClientEvent,
    Device,
    Feedback,
    FeedbackSource,
    Job,
    MetricPoint,
    ModelAliasName,
    ModelVersion,
    RetrainRun,
    RetrainStatus,
    UploadChunk,
    utcnow,
)
from tests.utils.factories import add_chunk, label_event, make_device

NOW = utcnow()
DAY = timedelta(days=1)
AGRONOMIST, FARMER = FeedbackSource.AGRONOMIST, FeedbackSource.FARMER
Labels = Sequence[tuple[str, FeedbackSource] | tuple[str, FeedbackSource, int | None]]  # a label, who, which phone


def settings_in(home: Path, **changes: object) -> Settings:
    return Settings(HOME=home, FARMERS_TO_AGREE=2, **changes)  # type: ignore[arg-type]


Word = tuple[str, FeedbackSource, int | None]  # a label, who gave it, and from which device if a farmer did


def label(session: Session, job_id: str, labels: Labels) -> None:
    job = session.get(Job, job_id)
    assert job is not None
    for name, source, *device in labels:
        device_id = (device[0] if device else job.device_id) if source == FARMER else None
        record_feedback(session, label_event(job_id, name, source, device_id))


def photo(session: Session, blobs: BlobStore, device: Device, age: timedelta, labels: Labels | None = None,
          status: str = "classified", data: bytes | None = None) -> str:  # fmt: skip
    """A job uploaded `age` ago with its photo in the blob store, finished as `status`, labelled with `labels`."""
    data = data or uuid.uuid4().bytes
    key = blobs.put("photos", data, ".jpg")
    assert device.id is not None
    new = jobs.NewPhoto(device.id, uuid.uuid4().hex, hashlib.sha256(data).hexdigest(), key, "image/jpeg", len(data))
    [job_id] = jobs.insert_jobs(session, [new])
    assert job_id is not None
    if status == "classified":
        jobs.finish(session, job_id, Finding(label="cmd", confidence=0.9, model_version="v1"))
    elif status == "rejected":
        jobs.finish(session, job_id, Finding(reason=RejectReason.TOO_DARK))
    else:
        jobs.claim(session, job_id)
    label(session, job_id, labels or [])
    session.execute(update(Job).where(col(Job.id) == job_id).values(created_at=NOW - age))
    session.commit()
    return job_id


def job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def has_photo(session: Session, blobs: BlobStore, job_id: str) -> bool:
    row = job(session, job_id)
    assert row is not None
    return row.photo_deleted_at is None and blobs.exists(row.blob_key)


def model(session: Session, blobs: BlobStore, version: str, age: timedelta) -> ModelVersion:
    """A registered version with its checkpoint and every build of it (the serving ones and the phone's) in the
    blob store."""
    data = f"checkpoint of {version}".encode()
    sha = hashlib.sha256(data).hexdigest()
    row = ModelVersion(version=version, sha256=sha, blob_key=blobs.put("models", data, ".pt"), made_by="test",
                       created_at=NOW - age)  # fmt: skip
    for runtime in BUILD_NAMESPACES:
        blobs.put_at(build_key(sha, runtime), b"onnx")
        blobs.put_at(build_key(sha, runtime).removesuffix(".onnx") + ".json", b"{}")
    session.add(row)
    session.commit()
    return row


def artifacts(blobs: BlobStore, row: ModelVersion) -> list[bool]:
    return [blobs.exists(key) for key in retention.model_files(row)]


def run_folder(config: Settings, run_id: int, base: Path) -> Path:
    """A run's dataset as core.retraining lays it out: links to the base data, copies of feedback photos."""
    folder = config.model_dir / f"run-{run_id}" / "train"
    (folder / "cassava" / "cmd").mkdir(parents=True)
    (folder / "cassava" / "cmd" / "base-leaf.jpg").symlink_to(base / "cassava" / "cmd" / "leaf.jpg")
    (folder / "cassava" / "cmd" / "feedback-x.jpg").write_bytes(b"a feedback photo")
    (folder / "negatives").symlink_to(base / "negatives", target_is_directory=True)
    (config.model_dir / f"challenger-run{run_id}.pt").write_bytes(b"a copy of the registered checkpoint")
    return folder.parent


def run_row(session: Session, status: RetrainStatus, finished: timedelta | None) -> int:
    run = RetrainRun(rule="test", fired_by="test", fired_at=NOW - 30 * DAY)  # open when made, as core.triggers.fire
    session.add(run)
    session.commit()
    if status.open:
        run.status = status
    else:  # as core.triggers.finish_run leaves it
        run.status, run.open_slot, run.finished_at = status, None, NOW - (finished or DAY)
    session.add(run)
    session.commit()
    assert run.id is not None
    return run.id


def test_retention_deletes_what_is_past_its_time_and_keeps_what_the_rules_keep(
    session: Session, tmp_path: Path
) -> None:
    config = settings_in(tmp_path / "home")
    blobs = BlobStore(config.blob_dir)
    device, _ = make_device(session)
    neighbour, _ = make_device(session, "a neighbour's phone")
    assert device.id is not None
    assert neighbour.id is not None
    old, ancient, recent = 100 * DAY, 400 * DAY, 10 * DAY
    shared = b"the same photo sent twice, months apart"
    past = {
        "unlabelled": photo(session, blobs, device, old),
        "one farmer": photo(session, blobs, device, old, [("cmd", FARMER)]),
        "farmers disagree": photo(session, blobs, device, old, [("cmd", FARMER), ("cbsd", FARMER)]),
        "one phone said it twice": photo(session, blobs, device, old, [("cgm", FARMER), ("cgm", FARMER)]),
        "rejected": photo(session, blobs, device, old, status="rejected"),
        "same bytes as a recent one": photo(session, blobs, device, old, data=shared),
    }
    ancient_job = photo(session, blobs, device, ancient, [("cmd", FARMER)])
    kept = {
        "agronomist": photo(session, blobs, device, old, [("cbsd", AGRONOMIST)]),
        "farmers agree": photo(
            session, blobs, device, old, [("cgm", FARMER, device.id), ("cgm", FARMER, neighbour.id)]
        ),
        "ancient, agronomist": photo(session, blobs, device, ancient, [("cmd", AGRONOMIST)]),
        "recent": photo(session, blobs, device, recent, data=shared),
        "not finished": photo(session, blobs, device, old, status="processing"),
    }
    session.add_all([
        ClientEvent(id="event-old", device_id=device.id, kind="upload_retried", at=NOW, received_at=NOW - 40 * DAY),
        ClientEvent(id="event-phone-clock-in-2000", device_id=device.id, kind="upload_retried",
                    at=NOW - 9000 * DAY, received_at=NOW - DAY),
        ClientEvent(id="event-phone-clock-in-2100", device_id=device.id, kind="upload_retried",
                    at=NOW + 9000 * DAY, received_at=NOW - DAY),
        MetricPoint(at=NOW - 31 * DAY, name="accuracy", value=0.5),
        MetricPoint(at=NOW - DAY, name="accuracy", value=0.6),
    ])  # fmt: skip
    session.commit()
    served, serving = model(session, blobs, "v0", 400 * DAY), model(session, blobs, "v1", 200 * DAY)
    never_promoted = model(session, blobs, "challenger-old", 40 * DAY)
    challenger = model(session, blobs, "challenger-now", 40 * DAY)
    young = model(session, blobs, "challenger-young", 5 * DAY)
    for version in ("v0", "v1"):  # v0 served, then v1 took over: both are champion history
        registry.set_alias(session, ModelAliasName.CHAMPION, version, "test")
    registry.set_alias(session, ModelAliasName.CHALLENGER, "challenger-now", "test")
    base = tmp_path / "base"  # MHOGO_TRAIN_DATA_DIR: the operator's, linked from a run's folder
    (base / "cassava" / "cmd").mkdir(parents=True)
    (base / "cassava" / "cmd" / "leaf.jpg").write_bytes(b"a base photo")
    (base / "negatives").mkdir()
    (base / "negatives" / "hand.jpg").write_bytes(b"a negative")
    finished = run_folder(config, run_row(session, RetrainStatus.PROMOTED, 10 * DAY), base)
    yesterday = run_folder(config, run_row(session, RetrainStatus.KEPT, DAY), base)
    running = run_folder(config, run_row(session, RetrainStatus.RUNNING, None), base)  # the one open run, last
    orphan = run_folder(config, 999, base)  # files of a run the database does not know: by their age
    for path in (orphan, orphan.parent / "challenger-run999.pt"):
        os.utime(path, times=((NOW - 8 * DAY).timestamp(),) * 2, follow_symlinks=False)
    upload, _ = uploads.create_upload(session, device.id, "open", 8, {}, DAY)
    add_chunk(session, blobs, upload, 0, b"in use")  # its row names it: kept whatever its age
    crashed, written = uploads.Part(blobs), uploads.Part(blobs)  # no row names them: a crash before their commit?
    for part in (crashed, written):
        part.write(b"no row")
        part.keep()
    in_use = blobs.path(session.exec(select(UploadChunk.key)).one() or "")
    for path in (in_use, blobs.path(crashed.key)):
        os.utime(path, times=((NOW - 2 * uploads.ORPHAN_AFTER).timestamp(),) * 2)

    would = retention.pending(session, config, NOW, blobs=blobs)
    done = retention.run_all(lambda: Session(session.get_bind(), expire_on_commit=False), blobs, config, NOW)

    assert done.pop("bytes_freed") > 0
    assert done == {"photos": 7, "photo_files": 6, "jobs": 1, "feedback": 1, "client_events": 1, "metric_points": 1,
                    "challengers": 1, "model_files": 1 + 2 * len(BUILD_NAMESPACES), "run_files": 4,
                    "part_files": 1}  # fmt: skip
    assert +would == +Counter({kind: done[kind] for kind in retention.KINDS})  # the dry run counted exactly what went
    for name, job_id in past.items():
        row = job(session, job_id)
        assert row is not None, name
        assert row.photo_deleted_at == NOW, name  # a tombstone: the diagnosis stays readable
        assert row.status in ("classified", "rejected")
    assert not blobs.exists(job(session, past["unlabelled"]).blob_key)  # type: ignore[union-attr]
    assert len(session.exec(select(Feedback).where(col(Feedback.job_id) == past["farmers disagree"])).all()) == 2
    assert job(session, ancient_job) is None
    assert session.exec(select(Feedback).where(col(Feedback.job_id) == ancient_job)).all() == []
    for name, job_id in kept.items():
        assert has_photo(session, blobs, job_id), name  # training data, recent, or not finished; the shared file too
    assert retention.kept_photos(session, config, NOW) == 3
    assert {row.id for row in session.exec(select(ClientEvent)).all()} == {"event-phone-clock-in-2000",
                                                                           "event-phone-clock-in-2100"}  # fmt: skip
    assert [point.value for point in session.exec(select(MetricPoint)).all()] == [0.6]
    for keeper in (served, serving, challenger, young):
        assert all(artifacts(blobs, keeper)), keeper.version
    assert not any(artifacts(blobs, never_promoted))
    deleted = session.get(ModelVersion, "challenger-old", populate_existing=True)
    assert deleted is not None  # its record stays: what was tried, how it did
    assert deleted.artifact_deleted_at == NOW
    with pytest.raises(RegistryError, match="deleted"):
        registry.set_alias(session, ModelAliasName.CHAMPION, "challenger-old", "operator")
    assert not finished.exists()
    assert not (config.model_dir / f"challenger-run{finished.name[4:]}.pt").exists()
    assert not orphan.exists()
    assert running.exists()
    assert yesterday.exists()
    assert sorted(str(path.relative_to(base)) for path in base.rglob("*")) == [
        "cassava", "cassava/cmd", "cassava/cmd/leaf.jpg", "negatives", "negatives/hand.jpg"]  # fmt: skip

    again = retention.run_pass(lambda: Session(session.get_bind(), expire_on_commit=False), blobs, config, NOW)
    assert (again.counts, again.more) == (Counter(), False)  # nothing more to delete
    assert +retention.pending(session, config, NOW, blobs=blobs) == Counter()
    assert not blobs.exists(crashed.key)
    assert in_use.exists()
    assert blobs.exists(written.key)  # just written: perhaps its commit is a moment away


def test_a_pass_deletes_at_most_a_batch_of_each_kind_and_says_more_is_waiting(session: Session, tmp_path: Path) -> None:
    config = settings_in(tmp_path / "home", RETENTION_BATCH=2)
    blobs = BlobStore(config.blob_dir)
    device, _ = make_device(session)
    for _ in range(5):
        photo(session, blobs, device, 100 * DAY)
    session.add_all([MetricPoint(at=NOW - 40 * DAY, name="accuracy", value=n) for n in range(3)])
    session.commit()

    def one_pass() -> tuple[int, int, bool]:
        outcome = retention.run_pass(lambda: Session(session.get_bind()), blobs, config, NOW)
        return outcome.counts["photos"], outcome.counts["metric_points"], outcome.more

    assert [one_pass() for _ in range(4)] == [(2, 2, True), (2, 1, True), (1, 0, False), (0, 0, False)]


def test_trusted_jobs_agrees_with_the_label_rule_training_uses(session: Session) -> None:
    """The query retention keeps photos by gives a job exactly when core.feedback.trusted_label gives it a label:
    every sequence of up to three labels from farmers (two devices, one of which changes its mind) and
    agronomists."""
    device, _ = make_device(session)
    other, _ = make_device(session, "another phone")
    assert device.id is not None
    assert other.id is not None
    words: list[Word] = [("cmd", FARMER, device.id), ("cbsd", FARMER, other.id), ("cmd", FARMER, other.id),
                         ("cmd", AGRONOMIST, None), ("cgm", AGRONOMIST, None)]  # fmt: skip
    expected = {}
    for size in range(4):
        for labels in itertools.product(words, repeat=size):
            new = jobs.NewPhoto(device.id, uuid.uuid4().hex, "0" * 64, "photos/00/x.jpg", "image/jpeg", 1)
            [job_id] = jobs.insert_jobs(session, [new])
            assert job_id is not None
            label(session, job_id, list(labels))
            rows = session.exec(select(Feedback).where(col(Feedback.job_id) == job_id)).all()
            expected[job_id] = trusted_label(rows, farmers_to_agree=2) is not None
    trusted = set(session.exec(trusted_jobs(farmers_to_agree=2)).all())
    assert {job_id for job_id, yes in expected.items() if yes} == trusted
    assert 0 < len(trusted) < len(expected)


def test_browser_logins_that_ended_or_expired_are_deleted_and_live_ones_kept(session: Session, tmp_path: Path) -> None:
    from core.users import end_session, session_user, start_session
    from tests.utils.factories import make_person

    config = settings_in(tmp_path / "home", SESSION_TTL_S=3600)
    user, _ = make_person(session, "amina")
    live, ended = start_session(session, config, user), start_session(session, config, user)
    end_session(session, ended.cookie)
    outcome = retention.run_pass(lambda: Session(session.get_bind()), BlobStore(config.blob_dir), config, utcnow())
    assert outcome.counts["user_sessions"] == 1
    assert session_user(session, live.cookie) is not None
    later = utcnow() + timedelta(hours=2)  # the live one has expired by then
    outcome = retention.run_pass(lambda: Session(session.get_bind()), BlobStore(config.blob_dir), config, later)
    assert outcome.counts["user_sessions"] == 1

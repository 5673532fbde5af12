"""The same photo sent many times at once with one key makes one job, on SQLite and PostgreSQL."""

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

import producers.intake
from core.blobs import BlobStore
from core.db import make_engine
from core.devices import add_device
from core.publisher import Publisher
from producers.intake import Accepted, Answer, Arrival, Checked, GroupIntake, accept_photos
from schemas.errors import IdempotencyConflict, UnreadableImage
from schemas.statuses import JobStatus
from schemas.tables import Device, Job
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher


def accept_one(session: Session, blobs: BlobStore, publisher: RecordingPublisher, device: Device, key: str,
               data: bytes) -> Accepted:  # fmt: skip
    """One upload accepted in a group of its own, in this session: as two API processes would, each on its own."""
    assert device.id is not None
    answer = accept_photos(session, blobs, publisher, [Arrival(device.id, key, data)], 10**8)[0]
    assert isinstance(answer, Accepted), answer
    return answer


def test_concurrent_repeats_make_one_job(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    blobs = BlobStore(tmp_path / "blobs")
    publisher = RecordingPublisher()
    data = sample_bytes("cgm")

    def send(_: int) -> tuple[str, bool]:
        with Session(engine, expire_on_commit=False) as session:
            accepted = accept_one(session, blobs, publisher, device, "same-key", data)
            return accepted.job_id, accepted.replayed

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(16)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(not replayed for _, replayed in results) == 1
    with Session(engine) as session:
        assert len(session.exec(select(Job)).all()) == 1
    assert len(publisher.photos) == 1


def test_a_group_answers_each_upload_on_its_own(engine: Engine, tmp_path: Path) -> None:
    """Uploads accepted together: new photos, a repeat within the group, a repeat of an earlier upload, a key reused
    for other bytes and a broken photo each get their own answer, and one bad photo refuses nothing else."""
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    blobs = BlobStore(tmp_path / "blobs")
    publisher = RecordingPublisher()
    cmd, cgm = sample_bytes("cmd"), sample_bytes("cgm")
    with Session(engine, expire_on_commit=False) as session:
        earlier = accept_one(session, blobs, publisher, device, "earlier", cgm)
        group = [
            Arrival(device.id, "a", cmd),
            Arrival(device.id, "a", cmd),  # the phone's retry, racing its first try
            Arrival(device.id, "earlier", cgm),
            Arrival(device.id, "earlier", cmd),  # the same key for another photo
            Arrival(device.id, "broken", cmd[: len(cmd) // 2]),
            Arrival(device.id, "b", cgm),
        ]
        answers = accept_photos(session, blobs, publisher, group, 10**8)
    first, retry, again, conflict, broken, other = answers
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(broken, UnreadableImage)
    accepted = [answer for answer in (first, retry, again, other) if isinstance(answer, Accepted)]
    assert [(a.replayed, a.status) for a in accepted] == [(False, "queued"), (True, "queued"), (True, "queued"),
                                                          (False, "queued")]  # fmt: skip
    assert isinstance(first, Accepted)
    assert isinstance(other, Accepted)
    assert [retry, again] == [
        Accepted(first.job_id, JobStatus.QUEUED, True),
        Accepted(earlier.job_id, JobStatus.QUEUED, True),
    ]
    assert [job_id for job_id, _ in publisher.photos] == [earlier.job_id, first.job_id, other.job_id]
    with Session(engine) as session:
        keys = sorted(job.idempotency_key for job in session.exec(select(Job)).all())
    assert keys == ["a", "b", "earlier"]
    assert all(blobs.exists(blob_key) for _, blob_key in publisher.photos)


def photo_files(blobs: BlobStore) -> set[str]:
    return {str(path.relative_to(blobs.root)) for path in blobs.root.glob("photos/*/*")}


def test_a_key_used_before_is_answered_before_any_file_is_written(engine: Engine, tmp_path: Path) -> None:
    """A retry, or a key reused for other bytes, is answered from its job, looked up for the whole group before
    anything is written: only the new photo's file is added. Before, the 422 for a reused key still wrote that
    photo's file, with no job pointing to it."""
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    blobs = BlobStore(tmp_path / "blobs")
    publisher = RecordingPublisher()
    with Session(engine, expire_on_commit=False) as session:
        first = accept_one(session, blobs, publisher, device, "key", sample_bytes("cmd", 0))
        before = photo_files(blobs)
        group = [
            Arrival(device.id, "key", sample_bytes("cmd", 1)),  # the key reused for another photo
            Arrival(device.id, "key", sample_bytes("cmd", 0)),  # the phone's retry
            Arrival(device.id, "new", sample_bytes("cmd", 2)),
            Arrival(device.id, "new", sample_bytes("cmd", 3)),  # its key reused within the group, other bytes
        ]
        conflict, retry, new, twin = accept_photos(session, blobs, publisher, group, 10**8)
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(twin, IdempotencyConflict)
    assert retry == Accepted(first.job_id, JobStatus.QUEUED, True)
    assert isinstance(new, Accepted)
    assert not new.replayed
    with Session(engine) as session:
        job = session.get(Job, new.job_id)
    assert job is not None
    assert photo_files(blobs) == before | {job.blob_key}


def test_a_group_the_broker_refuses_waits_for_the_sweeper(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    publisher = RecordingPublisher()
    publisher.down = True
    uploads = [Arrival(device.id, f"key-{n}", sample_bytes("cmd", n)) for n in range(3)]
    with Session(engine, expire_on_commit=False) as session:
        answers = accept_photos(session, BlobStore(tmp_path / "blobs"), publisher, uploads, 10**8)
    assert all(isinstance(answer, Accepted) and answer.status == JobStatus.RECEIVED for answer in answers)
    with Session(engine) as session:
        rows = session.exec(select(Job)).all()
    assert sorted(job.status for job in rows) == [JobStatus.RECEIVED] * 3
    assert all(job.enqueue_count == 0 for job in rows)


def test_the_intake_writer_groups_concurrent_uploads(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many threads submit at once: every upload gets its own answer, and the uploads checked while a group was
    being stored go out together after it, a group of up to 64 at a time (the point of the writer)."""
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    device_id = device.id
    intake = GroupIntake(lambda: Session(engine, expire_on_commit=False), BlobStore(tmp_path / "blobs"),
                         RecordingPublisher(), 10**8)  # fmt: skip
    groups: list[int] = []
    store = producers.intake.store_photos

    def count_groups(
        session: Session, blobs: BlobStore, publisher: Publisher, group: Sequence[Checked]
    ) -> list[Answer]:
        if not groups:  # the first group lasts until every other upload is checked and waits for the writer
            wait_until(lambda: intake.waiting == 80 - len(group))
        groups.append(len(group))
        return store(session, blobs, publisher, group)

    monkeypatch.setattr(producers.intake, "store_photos", count_groups)
    data = sample_bytes("cmd")
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            waiting = list(pool.map(lambda n: intake.submit(Arrival(device_id, f"k{n % 40}", data)), range(80)))
        answers = [answer.result(30) for answer in waiting]
    finally:
        intake.close()
    assert len({answer.job_id for answer in answers}) == 40
    assert sum(not answer.replayed for answer in answers) == 40
    assert sum(groups) == 80
    assert len(groups) <= 3  # the first, then the other 79 or fewer in groups of at most 64
    with Session(engine) as session:
        assert len(session.exec(select(Job)).all()) == 40


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.005)


def test_a_database_error_refuses_the_whole_group(tmp_path: Path) -> None:
    """The database did not answer: nothing of the group is accepted, each request gets the error (a 503 at the
    API), and the writer goes on with the next group."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'missing.db'}")  # no tables: every insert fails
    intake = GroupIntake(lambda: Session(engine), BlobStore(tmp_path / "blobs"), RecordingPublisher(), 10**8)
    try:
        for attempt in range(2):
            with pytest.raises(OperationalError):
                intake.submit(Arrival(1, f"key-{attempt}", sample_bytes("cmd"))).result(30)
    finally:
        intake.close()

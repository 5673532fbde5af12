"""The orphan sweep on SQLite and PostgreSQL with a real blob store: a photo file no job keeps goes once older than
the grace; a young one, one a job refers to, and one an upload has just found stored again stay; a sweep walks one
folder of the 256 and leaves the others; what a sweep cut short left aside is finished by the next."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col

from core import jobs, orphans
from core.blobs import BlobStore
from core.config import Settings
from core.devices import add_device
from core.sweeper import sweep_once
from schemas.tables import Job, utcnow
from tests.utils.fakes import RecordingPublisher

HOUR = 3600.0


def photo_key(shard: int, name: str) -> str:
    return f"photos/{shard:02x}/{shard:02x}{hashlib.sha256(name.encode()).hexdigest()[2:]}.jpg"


def stored(blobs: BlobStore, key: str, age_s: float, now: datetime) -> Path:
    """A photo file of `key`, last written `age_s` before `now`."""
    blobs.put_at(key, key.encode())
    return aged(blobs.path(key), age_s, now)


def aged(path: Path, age_s: float, now: datetime) -> Path:
    when = now.timestamp() - age_s
    os.utime(path, (when, when))
    return path


def job_for(session: Session, device_id: int, key: str) -> str:
    photo = jobs.NewPhoto(device_id, key, "0" * 64, key, "image/jpeg", 10)
    [job_id] = jobs.insert_jobs(session, [photo])
    assert job_id is not None
    return job_id


def files(blobs: BlobStore) -> set[str]:
    return {str(path.relative_to(blobs.root)) for path in blobs.root.glob("photos/*/*")}


def test_an_orphan_older_than_the_grace_goes_and_nothing_else(session: Session, blobs: BlobStore) -> None:
    device, _ = add_device(session, "phone")
    assert device.id is not None
    now = utcnow()
    shard = 0xAB
    orphan = photo_key(shard, "orphan")
    young, kept, let_go = photo_key(shard, "young"), photo_key(shard, "kept"), photo_key(shard, "let-go")
    elsewhere = photo_key(0xAC, "another folder's orphan")
    for key in (orphan, kept, let_go, elsewhere):
        stored(blobs, key, 2 * HOUR, now)
    stored(blobs, young, 0.5 * HOUR, now)
    job_for(session, device.id, kept)
    gone = job_for(session, device.id, let_go)  # retention let go of its photo: no job keeps the file
    session.execute(update(Job).where(col(Job.id) == gone).values(photo_deleted_at=now))
    session.commit()
    folder = blobs.folder("photos", shard)
    cut_short = folder / f".{Path(orphan).name}.x1y2z3w4"  # a write that never finished
    cut_short.write_bytes(b"half a photo")
    aged(cut_short, 2 * HOUR, now)
    writing = folder / f".{Path(young).name}.a1b2c3d4"  # a write going on now
    writing.write_bytes(b"a photo arriving")
    before = files(blobs)

    counts = orphans.sweep_orphans(session, blobs, shard, HOUR, now)

    assert counts == {"orphan_files": 2, "partial_files": 1, "bytes_freed": len(orphan) + len(let_go) + 12}
    assert before - files(blobs) == {orphan, let_go, str(cut_short.relative_to(blobs.root))}
    assert orphans.sweep_orphans(session, blobs, shard, HOUR, now) == {}  # nothing more to do


def test_a_photo_an_upload_finds_stored_again_stays(session: Session, blobs: BlobStore) -> None:
    """An upload whose bytes are stored already writes nothing (the same hash, the same file) but touches the file:
    its job, committed a moment later, finds its photo."""
    now = utcnow()
    key = photo_key(0x07, "sent again")
    stored(blobs, key, 2 * HOUR, now)
    blobs.stage(key, key.encode())  # the intake storing the same bytes for a new job
    assert orphans.sweep_orphans(session, blobs, 0x07, HOUR, utcnow()) == {}
    assert blobs.exists(key)


def test_what_a_sweep_cut_short_left_aside_is_put_back_or_deleted(session: Session, blobs: BlobStore) -> None:
    device, _ = add_device(session, "phone")
    assert device.id is not None
    now = utcnow()
    taken, orphan = photo_key(0x10, "taken meanwhile"), photo_key(0x10, "orphan")
    for key in (taken, orphan):
        path = stored(blobs, key, 2 * HOUR, now)
        path.rename(path.with_name(f".{path.name}.orphan"))  # renamed aside, then the sweep stopped
    job_for(session, device.id, taken)

    counts = orphans.sweep_orphans(session, blobs, 0x10, HOUR, now)

    assert counts == {"orphans_taken_back": 1, "orphan_files": 1, "bytes_freed": len(orphan)}
    assert files(blobs) == {taken}
    assert blobs.get(taken) == taken.encode()


def test_each_sweep_walks_the_next_folder(session: Session, blobs: BlobStore, tmp_path: Path) -> None:
    start = datetime(2026, 12, 6, 12, 0, 0)
    walked = [orphans.shard_at(start + timedelta(seconds=30 * n), 30.0) for n in range(256)]
    assert sorted(walked) == list(range(256))
    config = Settings(HOME=tmp_path, SWEEP_INTERVAL_S=10**9, ORPHAN_GRACE_S=HOUR)  # one folder for the whole test
    now = utcnow()
    shard = orphans.shard_at(now, config.SWEEP_INTERVAL_S)
    mine, other = photo_key(shard, "this sweep's"), photo_key((shard + 1) % 256, "the next sweep's")
    stored(blobs, mine, 2 * HOUR, now)
    stored(blobs, other, 2 * HOUR, now)
    engine = session.get_bind()
    counts = sweep_once(lambda: Session(engine), RecordingPublisher(), config, blobs)
    assert counts["orphan_files"] == 1
    assert files(blobs) == {other}

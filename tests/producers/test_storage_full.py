"""A full disk (ENOSPC, EDQUOT) where photos or the database are written refuses the uploads it could not keep with
507 and Retry-After, and only those: the rest of their group is accepted, and /healthz says the space is low. Before,
it answered 500 to the whole group of up to 64 concurrent uploads while /healthz said ok."""

import ctypes
import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import psycopg.errors
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

import core.files
import ml.files
from core.blobs import BlobStore
from core.db import disk_full, make_engine
from core.devices import add_device
from producers.api.deps import Services
from producers.intake import Accepted, Arrival, accept_photos
from schemas.errors import StorageFull
from schemas.statuses import JobStatus
from schemas.tables import Job
from tests.producers.test_intake_concurrency import photo_files
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher


def no_room_for(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Writing the file of `data` fails as on a full disk; every other write goes through."""
    write_and_rename = ml.files.write_and_rename

    def full_for_one(path: Path, write: Callable[[BinaryIO], object], sync: bool) -> None:
        def fill(handle: BinaryIO) -> None:
            write(handle)
            if handle.tell() == len(data):  # this photo's bytes: the disk fills as they go in
                raise OSError(errno.ENOSPC, "No space left on device")

        write_and_rename(path, fill, sync)

    monkeypatch.setattr(core.files, "write_and_rename", full_for_one)


def replayed(answer: object) -> Accepted:
    assert isinstance(answer, Accepted)
    return Accepted(answer.job_id, JobStatus.QUEUED, replayed=True)


def jobs_of(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(job.idempotency_key for job in session.exec(select(Job)).all())


def test_a_full_disk_refuses_only_the_photo_it_could_not_keep(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    blobs, publisher = BlobStore(tmp_path / "blobs"), RecordingPublisher()
    big = sample_bytes("cmd", 1)
    with Session(engine, expire_on_commit=False) as session:
        [earlier] = accept_photos(session, blobs, publisher, [Arrival(device.id, "earlier", sample_bytes("cgm"))],
                                  10**8)  # fmt: skip
        no_room_for(monkeypatch, big)
        group = [
            Arrival(device.id, "a", sample_bytes("cmd", 0)),
            Arrival(device.id, "b", big),
            Arrival(device.id, "earlier", sample_bytes("cgm")),
            Arrival(device.id, "c", sample_bytes("cmd", 2)),
        ]
        a, b, again, c = accept_photos(session, blobs, publisher, group, 10**8)  # fmt: skip
    assert isinstance(b, StorageFull)
    assert isinstance(a, Accepted)
    assert isinstance(c, Accepted)
    assert again == replayed(earlier)
    assert jobs_of(engine) == ["a", "c", "earlier"]
    assert len(photo_files(blobs)) == 3  # nothing of b's, not even its temporary file
    assert not [path for path in blobs.root.rglob(".*") if path.is_file()]


def test_a_flush_the_disk_could_not_keep_refuses_what_it_covered(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs(2) reports a write-back that found no room: the photos of the group are not durable, so none is
    accepted; a retry in the same group is answered from its job all the same."""
    with Session(sqlite_engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    blobs, publisher = BlobStore(tmp_path / "blobs"), RecordingPublisher()

    def syncfs_without_room(_: int) -> int:
        ctypes.set_errno(errno.ENOSPC)
        return -1

    with Session(sqlite_engine, expire_on_commit=False) as session:
        [earlier] = accept_photos(session, blobs, publisher, [Arrival(device.id, "earlier", sample_bytes("cgm"))],
                                  10**8)  # fmt: skip
        monkeypatch.setattr(blobs._sync, "_syncfs", syncfs_without_room)
        group = [Arrival(device.id, "a", sample_bytes("cmd", 0)), Arrival(device.id, "earlier", sample_bytes("cgm"))]
        a, again = accept_photos(session, blobs, publisher, group, 10**8)
    assert isinstance(a, StorageFull)
    assert again == replayed(earlier)
    assert jobs_of(sqlite_engine) == ["earlier"]


def test_a_full_database_refuses_the_new_photos_and_answers_the_retries(sqlite_engine: Engine, tmp_path: Path) -> None:
    """SQLite's SQLITE_FULL, for real: the database may grow no more (max_page_count)."""
    with Session(sqlite_engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    blobs, publisher = BlobStore(tmp_path / "blobs"), RecordingPublisher()
    with Session(sqlite_engine, expire_on_commit=False) as session:
        [earlier] = accept_photos(session, blobs, publisher, [Arrival(device.id, "earlier", sample_bytes("cgm"))],
                                  10**8)  # fmt: skip
    full = make_engine(str(sqlite_engine.url))

    @event.listens_for(full, "connect")
    def no_growth(connection: Any, _: Any) -> None:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")

    keys = [f"{n:03d}-" + "k" * 250 for n in range(20)]  # more than the pages have room for
    group = [Arrival(device.id, key, sample_bytes("cmd")) for key in keys]
    with Session(full, expire_on_commit=False) as session:
        *new, again = accept_photos(session, blobs, publisher, [*group, Arrival(device.id, "earlier",
                                    sample_bytes("cgm"))], 10**8)  # fmt: skip
    full.dispose()
    assert all(isinstance(answer, StorageFull) for answer in new)
    assert again == replayed(earlier)
    assert jobs_of(sqlite_engine) == ["earlier"]
    assert publisher.photos[1:] == []


def test_postgresql_s_disk_full_is_told_from_other_errors() -> None:
    assert disk_full(OperationalError("INSERT ...", {}, psycopg.errors.DiskFull("could not extend file")))
    assert not disk_full(OperationalError("INSERT ...", {}, psycopg.errors.AdminShutdown("terminating")))


def test_an_upload_the_disk_has_no_room_for_is_507_with_retry_after(
    client: TestClient, auth: dict[str, str], services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sample_bytes("cmd")
    no_room_for(monkeypatch, data)
    response = client.post("/v1/photos", content=data, headers={**auth, "Idempotency-Key": "full",
                                                                 "Content-Type": "image/jpeg"})  # fmt: skip
    assert response.status_code == 507, response.text
    assert response.headers["Retry-After"] == "300"
    assert "send it again later" in response.json()["detail"]
    assert jobs_of(services.engine) == []


def test_health_says_when_space_runs_low_and_not_where(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = client.get("/healthz")
    assert ok.status_code == 200, ok.text
    assert ok.json()["checks"]["blob_store_space"] == "ok"
    assert ok.json()["free_bytes"]["blob_store"] > services.settings.MIN_FREE_BYTES
    disk_usage = shutil.disk_usage

    def nearly_full(path: str | Path) -> Any:
        usage = disk_usage(path)
        return type(usage)(usage.total, usage.total - 150 * 2**20, 150 * 2**20)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    low = client.get("/healthz")
    assert low.status_code == 503
    body = low.json()
    assert body["status"] == "degraded"
    assert body["checks"]["blob_store_space"] == "low on space: 150 MiB free, under the 200 MiB needed"
    assert body["checks"]["database_space"].startswith("low on space")  # SQLite's file, on the same disk here
    assert body["free_bytes"] == {"blob_store": 150 * 2**20, "database": 150 * 2**20}
    assert str(services.settings.HOME) not in low.text
    assert "/" not in str(body["checks"])

"""Resumable-upload storage on SQLite and PostgreSQL: racing requests store one chunk per offset, never two; the bytes
live in part files of the blob store, never in the database, and every way an upload ends deletes them; a full disk
is StorageFull with nothing left behind; part files no row names are found once they are old."""

import errno
import os
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from core import uploads
from core.blobs import BlobStore
from schemas.errors import OffsetConflict, StorageFull
from schemas.tables import Upload, UploadChunk, utcnow
from tests.utils.factories import add_chunk, make_device, make_job, part_files
from tests.utils.fakes import fill_the_disk

HOUR = timedelta(hours=1)


def test_racing_chunks_at_one_offset_store_exactly_one(engine: Engine, blobs: BlobStore) -> None:
    with Session(engine, expire_on_commit=False) as session:
        device, _ = make_device(session)
        assert device.id is not None
        upload, created = uploads.create_upload(session, device.id, "k", 64, {}, HOUR)
    assert created
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def send(index: int) -> None:
        with Session(engine, expire_on_commit=False) as own:
            mine = uploads.find_upload(own, upload.id, device.id or 0)
            assert mine is not None
            part = uploads.Part(blobs)
            part.write(bytes([index]) * 16)
            barrier.wait()
            try:
                uploads.append_part(own, blobs, mine, 0, part)
                outcomes.append(f"stored {index}")
            except OffsetConflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=send, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes)[:7] == ["conflict"] * 7
    winner = int(sorted(outcomes)[7].removeprefix("stored "))
    with Session(engine) as session:
        chunks = session.exec(select(UploadChunk)).all()
        fresh = uploads.find_upload(session, upload.id, device.id)
        assert fresh is not None
        assert fresh.received == 16
    assert [(chunk.start, chunk.size_bytes, chunk.data) for chunk in chunks] == [(0, 16, None)]
    assert part_files(blobs) == {chunks[0].key: bytes([winner]) * 16}  # the losers removed their own files


def test_creation_is_idempotent_and_knows_accepted_keys(session: Session) -> None:
    device, _ = make_device(session)
    assert device.id is not None
    first, created = uploads.create_upload(session, device.id, "k", 10, {"filename": "a.jpg"}, HOUR)
    again, created_again = uploads.create_upload(session, device.id, "k", 10, {}, HOUR)
    assert created
    assert not created_again
    assert again.id == first.id
    job = make_job(session, device, key="done")
    complete, _ = uploads.create_upload(session, device.id, "done", 5, {}, HOUR)
    assert (complete.received, complete.job_id) == (5, job.id)


def test_chunks_assemble_in_order_and_stale_offsets_conflict(session: Session, blobs: BlobStore) -> None:
    device, _ = make_device(session)
    assert device.id is not None
    upload, _ = uploads.create_upload(session, device.id, "k", 6, {}, HOUR)
    assert add_chunk(session, blobs, upload, 0, b"abc") == 3
    with pytest.raises(OffsetConflict):
        add_chunk(session, blobs, upload, 0, b"abc")
    assert add_chunk(session, blobs, upload, 3, b"def") == 6
    assert uploads.assemble(session, blobs, upload) == b"abcdef"
    assert uploads.remove_expired(session, blobs) == 0
    assert uploads.remove_expired(session, blobs, now=upload.expires_at) == 1


def test_chunk_bytes_are_part_files_and_every_end_of_an_upload_deletes_them(session: Session, blobs: BlobStore) -> None:
    """41,943,036 bytes were left in `upload_chunks` by four requests: the database holds where the bytes are, not
    the bytes. Completion, removal (termination, a refused photo) and expiry delete rows and files."""
    device, _ = make_device(session)
    assert device.id is not None
    ends: dict[str, Callable[[Upload], object]] = {
        "complete": lambda upload: uploads.complete(session, blobs, upload, make_job(session, device, "done").id),
        "remove": lambda upload: uploads.remove(session, blobs, [upload.id]),
        "expire": lambda upload: uploads.remove_expired(session, blobs, now=upload.expires_at),
    }
    for name, end in ends.items():
        upload, _ = uploads.create_upload(session, device.id, name, 7, {}, HOUR)
        add_chunk(session, blobs, upload, 0, b"leaf")
        add_chunk(session, blobs, upload, 4, b"ies")
        chunks = session.exec(select(UploadChunk).where(UploadChunk.upload_id == upload.id)).all()
        assert [(chunk.start, chunk.size_bytes, chunk.data) for chunk in chunks] == [(0, 4, None), (4, 3, None)]
        assert sorted(part_files(blobs).values()) == [b"ies", b"leaf"], name
        end(upload)
        assert session.exec(select(UploadChunk)).all() == [], name
        assert part_files(blobs) == {}, name


@pytest.mark.parametrize("failing", ["write", "keep"])
def test_a_full_disk_is_storage_full_and_leaves_no_file(
    session: Session, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    device, _ = make_device(session)
    assert device.id is not None
    upload, _ = uploads.create_upload(session, device.id, "k", 8, {}, HOUR)

    def no_room(*args: object) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    if failing == "write":
        fill_the_disk(monkeypatch)
    else:  # the data fitted, the rename into place does not (a full folder, a full quota)
        monkeypatch.setattr(os, "replace", no_room)
    with pytest.raises(StorageFull):
        add_chunk(session, blobs, upload, 0, b"leaf")
    session.refresh(upload)
    assert upload.received == 0
    assert session.exec(select(UploadChunk)).all() == []
    assert part_files(blobs) == {}


def test_part_files_no_row_names_are_orphans_once_old(session: Session, blobs: BlobStore) -> None:
    """A crash between writing a part and its commit, or in the middle of a body: files nobody will ever read."""
    device, _ = make_device(session)
    assert device.id is not None
    upload, _ = uploads.create_upload(session, device.id, "k", 8, {}, HOUR)
    add_chunk(session, blobs, upload, 0, b"kept")
    unrecorded = uploads.Part(blobs)
    unrecorded.write(b"crashed before its commit")
    unrecorded.keep()
    cut = uploads.Part(blobs)
    cut.write(b"crashed in the middle of a body")  # its hidden temporary file, never kept
    later = utcnow() + uploads.ORPHAN_AFTER + timedelta(minutes=1)
    assert uploads.orphan_parts(session, blobs, utcnow()) == []  # young: perhaps still on their way
    orphans = uploads.orphan_parts(session, blobs, later)
    assert len(orphans) == 2
    assert blobs.path(unrecorded.key) in orphans
    assert any(path.name.startswith(f".{blobs.path(cut.key).name}.") for path in orphans)
    assert set(part_files(blobs)) - {path.relative_to(blobs.root).as_posix() for path in orphans} == {
        session.exec(select(UploadChunk.key)).one()}  # fmt: skip
    assert uploads.orphan_parts(session, blobs, later, limit=1) == orphans[:1]
    cut.discard()


def test_open_uploads_are_a_device_s_unfinished_unexpired_ones(session: Session, blobs: BlobStore) -> None:
    device, _ = make_device(session)
    other, _ = make_device(session, "another phone")
    assert device.id is not None
    assert other.id is not None
    uploads.create_upload(session, device.id, "soon", 10, {}, HOUR)
    uploads.create_upload(session, device.id, "later", 20, {}, 3 * HOUR)
    done, _ = uploads.create_upload(session, device.id, "done", 30, {}, HOUR)
    uploads.complete(session, blobs, done, make_job(session, device, key="done").id)
    uploads.create_upload(session, other.id, "theirs", 40, {}, HOUR)
    assert uploads.open_uploads(session, device.id) == (2, 30)
    assert uploads.open_uploads(session, device.id, now=utcnow() + 2 * HOUR) == (1, 20)  # expired: not open
    assert uploads.open_uploads(session, other.id) == (1, 40)
    make_job(session, device, key="sent in one request", data=b"other photo")
    assert [uploads.known_key(session, device.id, key) for key in ("soon", "sent in one request", "new")] == [
        True, True, False]  # fmt: skip

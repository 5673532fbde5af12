"""Resumable-upload storage on SQLite and PostgreSQL: racing requests store one chunk per offset, never two."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from core import uploads
from schemas.errors import OffsetConflict
from schemas.tables import UploadChunk
from tests.utils.factories import make_device, make_job

HOUR = timedelta(hours=1)


def test_racing_chunks_at_one_offset_store_exactly_one(engine: Engine) -> None:
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
            barrier.wait()
            try:
                uploads.append_chunk(own, mine, 0, bytes([index]) * 16)
                outcomes.append("stored")
            except OffsetConflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=send, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["stored"]
    with Session(engine) as session:
        chunks = session.exec(select(UploadChunk)).all()
        fresh = uploads.find_upload(session, upload.id, device.id)
        assert fresh is not None
        assert fresh.received == 16
    assert [(chunk.start, len(chunk.data)) for chunk in chunks] == [(0, 16)]


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


def test_chunks_assemble_in_order_and_stale_offsets_conflict(session: Session) -> None:
    device, _ = make_device(session)
    assert device.id is not None
    upload, _ = uploads.create_upload(session, device.id, "k", 6, {}, HOUR)
    assert uploads.append_chunk(session, upload, 0, b"abc") == 3
    with pytest.raises(OffsetConflict):
        uploads.append_chunk(session, upload, 0, b"abc")
    assert uploads.append_chunk(session, upload, 3, b"def") == 6
    assert uploads.assemble(session, upload) == b"abcdef"
    assert uploads.remove_expired(session) == 0
    assert uploads.remove_expired(session, now=upload.expires_at) == 1

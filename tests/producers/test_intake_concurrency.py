"""The same photo sent many times at once with one key makes one job, on SQLite and PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from core.blobs import BlobStore
from core.devices import add_device
from producers.intake import accept_photo
from schemas.tables import Job
from tests.utils.factories import sample_bytes
from tests.utils.fakes import RecordingPublisher


def test_concurrent_repeats_make_one_job(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        device, _ = add_device(session, "phone")
    blobs = BlobStore(tmp_path / "blobs")
    publisher = RecordingPublisher()
    data = sample_bytes("cgm")

    def send(_: int) -> tuple[str, bool]:
        with Session(engine, expire_on_commit=False) as session:
            accepted = accept_photo(session, blobs, publisher, device, "same-key", data, 10**8)
            return accepted.job_id, accepted.replayed

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(16)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(not replayed for _, replayed in results) == 1
    with Session(engine) as session:
        assert len(session.exec(select(Job)).all()) == 1
    assert len(publisher.photos) == 1

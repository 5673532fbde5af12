"""Photos are checked (decoded) beside the intake's writer, never in it: a large PNG being checked holds up no other
upload, and the writer only writes."""

import threading
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine
from sqlmodel import Session

import ml.imaging
import producers.intake
from core.blobs import BlobStore
from core.devices import add_device
from ml.imaging import MAX_PIXELS
from producers.intake import Arrival, GroupIntake
from tests.utils.factories import png_bytes, sample_bytes
from tests.utils.fakes import RecordingPublisher


def test_large_photos_being_checked_hold_up_no_other(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three 20 MP PNGs (under the cap) are held in their checks until a normal photo sent after them has been
    accepted: they wait in a lane of their own, and the writer thread never decodes a photo. Before, the writer
    checked each photo of its group itself, and the normal photo waited behind the PNGs' checks (six 7000x7000 PNGs
    delayed one from 0.13 s to 5.7 s); with one pool for all checks, it would wait behind the PNGs in the pool."""
    with Session(sqlite_engine) as session:
        device, _ = add_device(session, "phone")
    assert device.id is not None
    bigs = [png_bytes(Image.new("L", (4000, 5000), shade)) for shade in (80, 90, 100)]
    assert MAX_PIXELS >= 4000 * 5000
    checking_big, release_big = threading.Event(), threading.Event()
    checked_in: list[str] = []
    validate = ml.imaging.validate

    def held_when_big(data: bytes, max_pixels: int) -> tuple[str, tuple[int, int]]:
        checked_in.append(threading.current_thread().name)
        if data in bigs:
            checking_big.set()
            release_big.wait(60)
        return validate(data, max_pixels)

    monkeypatch.setattr(producers.intake, "validate", held_when_big)
    publisher = RecordingPublisher()
    intake = GroupIntake(lambda: Session(sqlite_engine, expire_on_commit=False), BlobStore(tmp_path / "blobs"),
                         publisher, MAX_PIXELS)  # fmt: skip
    try:
        large = [intake.submit(Arrival(device.id, f"large-{n}", big)) for n, big in enumerate(bigs)]
        assert checking_big.wait(30)
        normal = intake.submit(Arrival(device.id, "normal", sample_bytes("cmd"))).result(30)
        assert not any(answer.done() for answer in large)  # accepted while the large ones are still being checked
        assert [job_id for job_id, _ in publisher.photos] == [normal.job_id]
    finally:
        release_big.set()
    try:
        assert not any(answer.result(30).replayed for answer in large)
    finally:
        intake.close()
    assert sorted(name.rsplit("_", 1)[0] for name in checked_in) == ["large-photo-check"] * 3 + ["photo-check"]

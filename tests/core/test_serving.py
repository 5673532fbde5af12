"""What the inference workers serve: the shipped int8 build of the baseline is the baseline's, gives its answers,
and a version without a build gets one made once, under a lock, then reused."""

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session

from core import registry
from core.blobs import BlobStore
from core.config import Settings, settings
from core.db import open_database
from core.serving import (
    PHONE_RUNTIME,
    build_key,
    ensure_build,
    ensure_phone_build,
    load_classifier,
    phone_build_at_hand,
    prebuilt_path,
)
from ml.checkpoint import load_checkpoint
from ml.diagnose import examine
from ml.files import file_sha256
from ml.phone_build import PhoneBuild
from ml.predictor import Predictor
from schemas.tables import ModelVersion
from tests.utils.factories import SAMPLES

PHOTOS = sorted(SAMPLES.glob("cassava/*/*.jpg")) + sorted(SAMPLES.glob("negatives/*.jpg"))


@pytest.fixture
def registered(tmp_path: Path) -> tuple[BlobStore, ModelVersion]:
    engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    blobs = BlobStore(tmp_path / "blobs")
    with Session(engine, expire_on_commit=False) as session:
        row = registry.ensure_champion(session, blobs, settings.model_path)
    engine.dispose()
    return blobs, row


@pytest.mark.parametrize(("runtime", "agreement"), [("onnx-fp32", 1.0), ("onnx-int8", 0.95)])
def test_the_shipped_builds_are_the_baselines_and_serve_its_answers(runtime: str, agreement: float) -> None:
    shipped = prebuilt_path(settings.model_path, runtime)
    spec = json.loads(shipped.with_suffix(".json").read_text())
    assert spec["checkpoint_sha256"] == file_sha256(settings.model_path)
    assert spec["precision"] == runtime.removeprefix("onnx-")
    build = PhoneBuild(shipped)  # checks the file against the sha256 its JSON gives
    eager = Predictor(load_checkpoint(settings.model_path))
    limits, pixels = settings.quality_thresholds, settings.MAX_IMAGE_PIXELS
    served = [examine(p.read_bytes(), build, limits, pixels) for p in PHOTOS]
    reference = [examine(p.read_bytes(), eager, limits, pixels) for p in PHOTOS]
    same = [(a.label, a.reason) == (b.label, b.reason) for a, b in zip(served, reference, strict=True)]
    assert sum(same) / len(same) >= agreement, [p.name for p, s in zip(PHOTOS, same, strict=True) if not s]
    for finding in served:
        if finding.probabilities:  # the head stays fp32: probabilities are not cut to 1/256 steps
            assert sum(finding.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_a_registered_version_loads_the_shipped_build_without_making_one(
    registered: tuple[BlobStore, ModelVersion],
) -> None:
    blobs, row = registered
    runtime = settings.SERVING_RUNTIME
    classifier = load_classifier(blobs, row, runtime, 1, settings.quality_thresholds, SAMPLES,
                                 settings.MAX_IMAGE_PIXELS, prebuilt_model=settings.model_path)  # fmt: skip
    assert isinstance(classifier, PhoneBuild)
    assert classifier.version == row.version
    stored = blobs.path(build_key(row.sha256, runtime))
    assert stored.read_bytes() == prebuilt_path(settings.model_path, runtime).read_bytes()


def test_a_version_without_a_build_gets_one_made_once(registered: tuple[BlobStore, ModelVersion]) -> None:
    blobs, row = registered
    made: list[Path] = []
    errors: list[BaseException] = []

    def load() -> None:  # two processes' worth of loaders at once, no shipped build: one makes it, one waits
        try:
            path = ensure_build(blobs, row, "onnx-int8", settings.quality_thresholds, SAMPLES / "cassava",
                                settings.MAX_IMAGE_PIXELS, prebuilt=None)  # fmt: skip
            made.append(path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert made[0] == made[1] == blobs.path(build_key(row.sha256, "onnx-int8"))
    spec = json.loads(made[0].with_suffix(".json").read_text())
    assert (spec["checkpoint_sha256"], spec["model_version"], spec["precision"]) == (row.sha256, row.version, "int8")
    build = PhoneBuild(made[0])
    outputs, leaf = build.runner.run(np.zeros((1, 256, 256, 3), dtype=np.float32))
    assert outputs.shape == (1, 5)
    assert leaf is not None
    leftovers = [p.name for p in made[0].parent.iterdir() if p.name.startswith(".build-")]
    assert leftovers == []
    mtime = made[0].stat().st_mtime_ns
    assert ensure_build(blobs, row, "onnx-int8", settings.quality_thresholds, SAMPLES, 1, prebuilt=None) == made[0]
    assert made[0].stat().st_mtime_ns == mtime  # reused, not made again


def test_the_torch_runtime_serves_the_checkpoint_itself(registered: tuple[BlobStore, ModelVersion]) -> None:
    blobs, row = registered
    classifier = load_classifier(blobs, row, "torch", 1, settings.quality_thresholds, SAMPLES, 10**8)
    assert isinstance(classifier, Predictor)
    assert not blobs.path(build_key(row.sha256, "onnx-int8")).exists()


def test_a_build_cut_short_is_made_again_and_readers_never_see_half_of_one(
    registered: tuple[BlobStore, ModelVersion],
) -> None:
    """A copy of the shipped build was once written straight onto its place: a process starting meanwhile loaded
    half of it ("sha256 differs"), and one cut short by a crash stayed broken for good."""
    blobs, row = registered
    shipped = prebuilt_path(settings.model_path, "onnx-fp32")
    place = blobs.path(build_key(row.sha256, "onnx-fp32"))
    place.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shipped.with_suffix(".json"), place.with_suffix(".json"))
    place.write_bytes(shipped.read_bytes()[: 1 << 20])  # the copy a crash cut short
    loaded: list[str | BaseException] = []

    def load() -> None:
        try:
            path = ensure_build(blobs, row, "onnx-fp32", settings.quality_thresholds, SAMPLES,
                                settings.MAX_IMAGE_PIXELS, prebuilt=shipped)  # fmt: skip
            loaded.append(PhoneBuild(path).version)  # checks the file against the sha256 its JSON gives
        except BaseException as exc:
            loaded.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loaded == [row.version] * 4
    assert place.read_bytes() == shipped.read_bytes()
    assert not [p.name for p in place.parent.iterdir() if p.name.startswith(f".{place.name}.")]  # no temporaries


@pytest.mark.parametrize("shipped", [True, False])
def test_the_phone_build_is_at_hand_when_shipped_beside_the_seed_model(shipped: bool, tmp_path: Path) -> None:
    """A build shipped beside the seed model is a copy away (the API makes that copy at once); without it, the build
    must be made (in the background: core.phone_model)."""
    seed = tmp_path / "seed" / "baseline.pt"
    seed.parent.mkdir()
    shutil.copy(settings.model_path, seed)
    if shipped:
        shipped_build = prebuilt_path(settings.model_path, PHONE_RUNTIME)
        for suffix in (".onnx", ".json"):
            shutil.copy(shipped_build.with_suffix(suffix), prebuilt_path(seed, PHONE_RUNTIME).with_suffix(suffix))
    config = Settings(HOME=tmp_path, MODEL_PATH=seed)
    blobs = BlobStore(tmp_path / "blobs")
    row = ModelVersion(version="v", sha256=file_sha256(seed), blob_key="k", made_by="test")
    assert phone_build_at_hand(config, blobs, row) is shipped
    if shipped:
        path = ensure_phone_build(config, blobs, row)
        assert path == blobs.path(build_key(row.sha256, PHONE_RUNTIME))
        assert phone_build_at_hand(Settings(HOME=tmp_path, MODEL_PATH=tmp_path / "gone.pt"), blobs, row)  # made

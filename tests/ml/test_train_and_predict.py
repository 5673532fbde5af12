"""Training (dry run, on the sample photos), the checkpoint format, and in-process prediction."""

from pathlib import Path

import pytest
import torch

from core.config import settings
from ml.checkpoint import load_checkpoint
from ml.data import dataset_version, scan
from ml.diagnose import examine
from ml.files import file_sha256
from ml.model import CassavaNet, ModelConfig
from ml.predictor import Predictor
from ml.train import TrainConfig, average_weights, train
from schemas.errors import ModelError
from schemas.labels import LABELS
from schemas.reasons import RejectReason
from schemas.statuses import JobStatus
from tests.utils.factories import SAMPLES, sample_bytes

CLASSES = [label.value for label in LABELS]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_checkpoint(settings.model_path))


def test_dry_run_trains_and_writes_a_complete_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    result = train(SAMPLES, out, TrainConfig(dry_run=True, seed=3), settings.quality_thresholds)
    assert result.sha256 == file_sha256(out)
    loaded = load_checkpoint(out)
    assert loaded.classes == tuple(CLASSES)
    assert loaded.version == result.checkpoint.version
    meta = loaded.meta
    assert meta["dataset_version"].startswith("ds-")
    assert meta["dataset_size"] == 60  # 50 cassava photos and 10 that are not
    assert meta["split"] == {"train": 35, "val": 10, "test": 5, "seed": 3, "negatives": [7, 2, 1]}
    assert loaded.leaf_gate is not None
    assert meta["leaf_gate"] == loaded.leaf_gate.fitted
    assert meta["test_metrics"]["negative_rejection_rate"] in (0.0, 1.0)  # one photo
    assert [row["run"] for row in meta["history"]] == [1, 2, 3]  # a soup of three, one epoch each
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(meta["history"][0])
    assert meta["seconds"] > 0
    assert meta["code_version"]
    for part in ("val", "test"):
        assert meta[f"{part}_metrics"]["photos"] == meta["split"][part]
        assert len(meta[f"{part}_report"]["confusion_matrix"]["counts"]) == 5
    assert loaded.tta_views == 2
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, result.checkpoint.model.state_dict()[key]), key


def test_a_soup_is_the_mean_of_its_models_weights() -> None:
    torch.manual_seed(0)
    models = [CassavaNet(ModelConfig()) for _ in range(3)]
    soup = average_weights(models)
    for key, value in soup.state_dict().items():
        parts = [m.state_dict()[key] for m in models]
        if value.is_floating_point():
            assert torch.allclose(value, sum(parts) / 3), key
        else:
            assert torch.equal(value, parts[0]), key
    assert not torch.equal(soup._fc.weight, models[0]._fc.weight)


def test_dry_run_soup_trains_one_run_per_seed(tmp_path: Path) -> None:
    result = train(SAMPLES, tmp_path / "m.pt", TrainConfig(dry_run=True, seed=3, soup=2), settings.quality_thresholds)
    history = result.checkpoint.meta["history"]
    assert [row["run"] for row in history] == [1, 2]
    assert result.checkpoint.meta["params"]["soup"] == 2


def test_dataset_version_depends_on_content_and_labels(tmp_path: Path) -> None:
    samples = scan(SAMPLES, CLASSES)
    version, manifest = dataset_version(samples, CLASSES)
    assert len(manifest) == 50
    assert dataset_version(samples, CLASSES)[0] == version
    assert dataset_version(samples[:-1], CLASSES)[0] != version


def test_scan_accepts_a_shared_data_like_layout(tmp_path: Path) -> None:
    (tmp_path / "cassava").symlink_to(SAMPLES / "cassava")
    assert len(scan(tmp_path, CLASSES)) == 50
    with pytest.raises(FileNotFoundError, match="one folder per class"):
        scan(tmp_path / "cassava" / "cmd", CLASSES)


def test_committed_baseline_is_trained_on_the_real_photos(predictor: Predictor) -> None:
    meta = load_checkpoint(settings.model_path).meta
    assert meta["dataset_size"] >= 90
    assert meta["history"]
    assert meta["cross_validation"]["folds"] == 5  # the recipe's five-fold CV, recorded in the model it made
    assert predictor.classes == tuple(CLASSES)


def test_baseline_beats_chance_clearly_on_the_samples(predictor: Predictor) -> None:
    photos = sorted(SAMPLES.glob("cassava/*/*.jpg"))
    right = 0
    for path in photos:
        finding = examine(path.read_bytes(), predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
        right += finding.label == path.parent.name
    assert right / len(photos) >= 0.6  # chance is 0.2; the samples were mostly seen in training


def test_examine_classifies_and_rejects(predictor: Predictor) -> None:
    finding = examine(sample_bytes("cmd"), predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
    assert finding.status == JobStatus.CLASSIFIED
    assert finding.label in CLASSES
    assert finding.probabilities is not None
    assert sum(finding.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert finding.model_version == predictor.version
    assert set(finding.timings_ms) == {"decode", "prepare", "model"}
    hand = sample_bytes("negatives", 6)
    rejected = examine(hand, predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
    assert (rejected.status, rejected.reason, rejected.label) == (JobStatus.REJECTED, RejectReason.TOO_SMALL, None)
    assert rejected.model_version is None  # the quality gate turned it away before the model saw it
    garbage = examine(b"\xff\xd8\xff" + b"\x00" * 100, predictor, settings.quality_thresholds, 10**8)
    assert (garbage.status, garbage.reason) == (JobStatus.REJECTED, RejectReason.UNREADABLE)


def test_a_broken_model_file_is_a_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_checkpoint(broken)
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "missing.pt")

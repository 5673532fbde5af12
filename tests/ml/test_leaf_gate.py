"""The leaf gate: fitted on real photos, its threshold chosen out of fold, carried in the checkpoint, applied by
`examine`, the evaluation and the phone build alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import settings
from ml.augment import AugmentConfig
from ml.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ml.data import Sample, scan_negatives
from ml.diagnose import examine
from ml.evaluate import evaluate_dir
from ml.export import export_onnx
from ml.gatefit import GateConfig, GateData, attach_gate, auroc, fit_gate, gate_data, threshold_at
from ml.imaging import decode, prepare
from ml.phone_build import OnnxPredictor, phone_input
from ml.predictor import Predictor
from ml.tensors import model_input
from schemas.reasons import RejectReason
from tests.utils.factories import SAMPLES

CLASSES = ("cbb", "cbsd", "cgm", "cmd", "healthy")
CASSAVA = [Sample(p, CLASSES.index(p.parent.name)) for p in sorted(SAMPLES.glob("cassava/*/*.jpg"))]
OTHERS = scan_negatives(SAMPLES / "negatives")


def clusters(n: int, centre: float, generator: torch.Generator, views: int = 1) -> GateData:
    """n photos with `views` rows each, embeddings around `centre` in 8 dimensions."""
    rows = n * views
    return GateData(
        embedding=torch.randn(rows, 8, generator=generator) + centre,
        logits=torch.randn(rows, 5, generator=generator),
        photo=torch.arange(n).repeat_interleave(views),
        served=torch.arange(rows) % views == 0,
    )


def test_threshold_at_turns_away_at_most_the_target_share() -> None:
    scores = torch.linspace(0, 1, 100)
    threshold = threshold_at(scores, 0.05)
    assert float((scores < threshold).float().mean()) == pytest.approx(0.05)
    assert threshold_at(scores, 0.0) == 0.0


def test_auroc_counts_pairs_in_order() -> None:
    assert auroc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])) == 1.0
    assert auroc(torch.tensor([0.1]), torch.tensor([0.9])) == 0.0
    assert auroc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.5


def test_a_gate_fitted_out_of_fold_holds_its_rates_on_new_photos() -> None:
    generator = torch.Generator().manual_seed(0)
    config = GateConfig(inputs="embedding", false_rejection_target=0.05)
    gate = fit_gate(clusters(200, 1.0, generator, views=3), clusters(200, -1.0, generator, views=3), config)
    leaves, others = clusters(2000, 1.0, generator), clusters(2000, -1.0, generator)
    false_rejection = float((gate.probability(leaves.embedding, leaves.logits) < gate.threshold).float().mean())
    rejected = float((gate.probability(others.embedding, others.logits) < gate.threshold).float().mean())
    assert false_rejection <= 0.1  # the target was 0.05 out of fold
    assert rejected >= 0.9  # two unit Gaussians 2.8 standard deviations apart along the diagonal
    assert gate.fitted["out_of_fold"]["false_rejection_rate"] <= 0.05
    assert gate.fitted["cassava_photos"] == 200
    assert gate.fitted["rows"] == 1200


@pytest.fixture(scope="module")
def baseline() -> Checkpoint:
    return load_checkpoint(settings.model_path)


def test_on_real_photos_the_gate_ranks_held_out_negatives_below_cassava(baseline: Checkpoint) -> None:
    """Fitted on half the sample photos, scored on the other half (views of a photo never on both sides)."""
    augmentation = AugmentConfig()
    train = gate_data(baseline, CASSAVA[::2], augmentation, views=1), gate_data(baseline, OTHERS[::2], augmentation, 1)
    test = gate_data(baseline, CASSAVA[1::2], augmentation, 0), gate_data(baseline, OTHERS[1::2], augmentation, 0)
    gate = fit_gate(*train, GateConfig())
    leaf = gate.probability(test[0].embedding, test[0].logits)
    other = gate.probability(test[1].embedding, test[1].logits)
    assert len(leaf) == 25
    assert len(other) == 5
    assert auroc(leaf, other) >= 0.9


@pytest.fixture(scope="module")
def gated(baseline: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    """The baseline with a gate fitted on every sample photo, written to disk and read back."""
    checkpoint = Checkpoint(baseline.model, baseline.classes, baseline.preprocess, "gated", tta_views=2)
    attach_gate(checkpoint, CASSAVA, OTHERS, GateConfig(augmented_views=1), AugmentConfig())
    path = tmp_path_factory.mktemp("gate") / "gated.pt"
    save_checkpoint(checkpoint, path)
    return load_checkpoint(path)


def test_the_gate_travels_in_the_checkpoint_and_turns_away_a_banana_leaf(gated: Checkpoint) -> None:
    assert gated.leaf_gate is not None
    assert gated.leaf_gate.inputs == GateConfig().inputs
    predictor = Predictor(gated)
    banana = next(p for p in OTHERS if p.path.name.startswith("banana_leaf")).path.read_bytes()
    finding = examine(banana, predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
    assert (finding.status, finding.reason, finding.label) == ("rejected", RejectReason.NOT_CASSAVA_LEAF, None)
    assert finding.model_version == gated.version  # the model looked: its gate turned the photo away
    assert finding.leaf_probability is not None
    assert finding.leaf_probability < gated.leaf_gate.threshold
    leaf = examine(CASSAVA[0].path.read_bytes(), predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
    assert leaf.status == "classified"
    assert leaf.leaf_probability is not None
    assert leaf.leaf_probability >= gated.leaf_gate.threshold


def test_evaluate_counts_the_gate_s_rejections(gated: Checkpoint) -> None:
    report, outcomes = evaluate_dir(Predictor(gated), SAMPLES, settings.quality_thresholds, progress=False)
    others = [o for o in outcomes if o.truth < 0]
    assert report["negative_rejection_rate"] == round(sum(o.predicted < 0 for o in others) / len(others), 4)
    assert report["negative_rejections"].get("not_cassava_leaf", 0) >= 1  # fitted on them: they must go
    assert report["negative_rejection_rate"] > 0.9  # the hand is too small, the rest were fitted on
    assert report["leaf_gate"]["inputs"] == GateConfig().inputs
    assert "other" not in report["negative_rejection_by_kind"]  # every sample negative is of a known kind


def test_the_phone_build_carries_the_gate(gated: Checkpoint, tmp_path: Path) -> None:
    exported = export_onnx(gated, tmp_path / "gated.onnx", settings.quality_thresholds)
    photos = [CASSAVA[0].path, CASSAVA[20].path, *(s.path for s in OTHERS[:3])]
    images = [prepare(decode(p.read_bytes(), 10**8), gated.preprocess).image for p in photos]
    server = Predictor(gated).outputs(torch.stack([model_input(i, gated.preprocess) for i in images]))
    phone = OnnxPredictor(exported.path).leaf_probability(np.stack([phone_input(i, gated.preprocess) for i in images]))
    assert phone is not None
    assert server.leaf is not None
    np.testing.assert_allclose(phone, server.leaf.numpy(), atol=1e-4)
    spec = exported.path.with_suffix(".json").read_text()
    assert '"leaf_probability"' in spec
    assert '"not_cassava_leaf"' in spec


def test_a_model_without_a_gate_still_loads_and_serves(baseline: Checkpoint) -> None:
    bare = Checkpoint(baseline.model, baseline.classes, baseline.preprocess, "bare", tta_views=2)
    predictor = Predictor(bare)
    finding = examine(CASSAVA[0].path.read_bytes(), predictor, settings.quality_thresholds, 10**8)
    assert finding.status == "classified"
    assert finding.leaf_probability is None

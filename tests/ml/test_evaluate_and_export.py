"""Evaluation through the serving path on a folder laid out like ../shared/data, and the phone build's parity."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import settings
from ml.checkpoint import Checkpoint, load_checkpoint
from ml.evaluate import evaluate_dir
from ml.export import Exported, export_int8
from ml.imaging import decode, prepare
from ml.leafgate import GATE_INPUTS
from ml.phone_build import OnnxPredictor, phone_input
from ml.predictor import Predictor
from ml.report import write_eval_report
from ml.tensors import model_input
from tests.utils.factories import SAMPLES

CASSAVA = sorted(SAMPLES.glob("cassava/*/*.jpg"))


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return load_checkpoint(settings.model_path)


def test_evaluate_reports_what_the_field_needs(checkpoint: Checkpoint, tmp_path: Path) -> None:
    report, outcomes = evaluate_dir(Predictor(checkpoint), SAMPLES, settings.quality_thresholds, progress=False)
    assert report["photos"] == 50
    assert report["negatives"] == 10
    assert report["negative_rejection_rate"] == 1.0  # the baseline's leaf gate was fitted on these
    assert report["negative_rejections"]["too_small"] == 1  # the hand: the quality gate turns it away first
    assert report["negative_rejections"]["not_cassava_leaf"] == 9  # the rest, a tomato leaf and a dog among them
    assert report["leaf_gate"]["inputs"] in GATE_INPUTS
    assert report["false_rejection_rate"] == 0
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "expected_calibration_error"} <= set(report)
    right = sum(o.predicted == o.truth for o in outcomes if o.truth >= 0)
    assert report["accuracy"] == round(right / 50, 4)
    assert set(report["slices"]) == {"dark", "bright", "small_leaf", "large_leaf"}
    assert sum(report["slices"][s]["photos"] for s in ("dark", "bright")) == 50
    write_eval_report(report, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    for name in ("confusion", "reliability"):
        assert (tmp_path / f"report-{name}.png").read_bytes().startswith(b"\x89PNG")


def test_the_onnx_build_gives_the_server_answers(
    checkpoint: Checkpoint, baseline_onnx: Exported, tmp_path: Path
) -> None:
    exported = baseline_onnx
    spec = json.loads(exported.path.with_suffix(".json").read_text())
    assert spec["classes"] == list(checkpoint.classes)
    assert spec["model_version"] == checkpoint.version
    assert spec["sha256"] == exported.sha256
    assert spec["tta_views"] == checkpoint.tta_views
    images = [prepare(decode(p.read_bytes(), 10**8), checkpoint.preprocess).image for p in CASSAVA]
    server = Predictor(checkpoint).probabilities(torch.stack([model_input(i, checkpoint.preprocess) for i in images]))
    pixels = np.stack([phone_input(i, checkpoint.preprocess) for i in images])
    phone = OnnxPredictor(exported.path).probabilities(pixels)
    agreement = float((server.numpy().argmax(1) == phone.argmax(1)).mean())
    assert agreement >= 0.99
    assert float(np.abs(server.numpy() - phone).max()) <= 0.01

    quantised = export_int8(checkpoint, exported.path, tmp_path / "m8.onnx", list(pixels[::6]),
                            settings.quality_thresholds)  # fmt: skip
    assert quantised.size_bytes < exported.size_bytes / 3
    int8 = OnnxPredictor(quantised.path).probabilities(pixels)
    assert float((server.numpy().argmax(1) == int8.argmax(1)).mean()) >= 0.9
    # The leaf gate survives quantisation: it turns away the photos that are not cassava leaves, as in fp32.
    negatives = sorted(SAMPLES.glob("negatives/*.jpg"))
    others = np.stack([phone_input(prepare(decode(p.read_bytes(), 10**8), checkpoint.preprocess).image,
                                   checkpoint.preprocess) for p in negatives])  # fmt: skip
    assert checkpoint.leaf_gate is not None
    threshold = checkpoint.leaf_gate.threshold
    fp32_leaf = OnnxPredictor(exported.path).leaf_probability(others)
    int8_leaf = OnnxPredictor(quantised.path).leaf_probability(others)
    assert fp32_leaf is not None
    assert int8_leaf is not None
    assert float((int8_leaf < threshold).mean()) >= float((fp32_leaf < threshold).mean()) - 0.1
    assert float(np.abs(int8_leaf - fp32_leaf).max()) < 0.2

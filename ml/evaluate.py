"""Evaluation through the serving path: every photo goes through decode -> prepare -> quality gate -> model, as
in production, so a photo the gate turns away counts as a wrong answer for its class.

`evaluate_dir` reads a folder laid out like ../shared/data (`cassava/<class>/`, optionally `negatives/`), or one
holding just the class folders, and returns the figures `mhogo evaluate` prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ml.data import Sample, negatives_beside, scan
from ml.imaging import MAX_LOCAL_PIXELS, decode, prepare
from ml.metrics import expected_calibration_error, reliability, summarize
from ml.predictor import Predictor
from ml.quality import QualityThresholds, leaf_verdict, quality_gate
from ml.tensors import model_input
from schemas.errors import BadInput
from schemas.reasons import RejectReason

DARK_LUMA = 100.0  # slices: darker photos than this mean luma (the brightness target) vs brighter ones
SMALL_LEAF_GREEN = 0.7  # slices: leaf (plant green) filling less than this share of the frame vs more


@dataclass(frozen=True)
class Outcome:
    path: Path
    truth: int  # class index; -1 for a photo that is not a cassava leaf
    predicted: int  # class index; -1 when the photo was turned away
    reason: RejectReason | None
    probabilities: tuple[float, ...] | None
    stats: dict[str, float] | None
    leaf: float | None = None  # the leaf gate's score, when the model has a gate and the quality gate passed


def run_photos(
    predictor: Predictor,
    samples: Sequence[Sample],
    limits: QualityThresholds,
    batch_size: int = 16,
    progress: bool = True,
) -> list[Outcome]:
    """Diagnose every photo as the workers would (quality gate, model, leaf gate), batching the model calls."""
    outcomes: list[Outcome | None] = [None] * len(samples)
    pending: list[tuple[int, torch.Tensor, dict[str, float]]] = []

    def flush() -> None:
        if not pending:
            return
        out = predictor.outputs(torch.stack([tensor for _, tensor, _ in pending]))
        leaf = out.leaf.tolist() if out.leaf is not None else [None] * len(pending)
        for (index, _, stats), row, score in zip(pending, out.probabilities, leaf, strict=True):
            sample = samples[index]
            verdict = leaf_verdict(stats, not predictor.rejects(score), limits)
            if verdict is not None:
                outcomes[index] = Outcome(sample.path, sample.label, -1, verdict, None, stats, score)
            else:
                probs = tuple(row.tolist())
                outcomes[index] = Outcome(sample.path, sample.label, int(row.argmax()), None, probs, stats, score)
        pending.clear()

    for index, sample in enumerate(tqdm(samples, desc="evaluating", unit="photo", disable=not progress)):
        try:
            prepared = prepare(decode(sample.path.read_bytes(), MAX_LOCAL_PIXELS), predictor.preprocess)
        except BadInput:
            outcomes[index] = Outcome(sample.path, sample.label, -1, RejectReason.UNREADABLE, None, None)
            continue
        reason = quality_gate(prepared.stats, limits)
        if reason is not None:
            outcomes[index] = Outcome(sample.path, sample.label, -1, reason, None, prepared.stats)
            continue
        pending.append((index, model_input(prepared.image, predictor.preprocess), prepared.stats))
        if len(pending) >= batch_size:
            flush()
    flush()
    return [outcome for outcome in outcomes if outcome is not None]


def cassava_metrics(outcomes: Sequence[Outcome], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy and friends over every cassava photo (rejections counted wrong), and calibration over the rest."""
    targets = torch.tensor([o.truth for o in outcomes], dtype=torch.long)
    predictions = torch.tensor([o.predicted for o in outcomes], dtype=torch.long)
    metrics = summarize(targets, predictions, classes)
    classified = [o for o in outcomes if o.probabilities is not None]
    confidences = torch.tensor([max(o.probabilities) for o in classified if o.probabilities])
    correct = torch.tensor([o.predicted == o.truth for o in classified])
    metrics["expected_calibration_error"] = round(expected_calibration_error(confidences, correct), 4)
    metrics["reliability"] = reliability(confidences, correct)
    metrics["photos"] = len(outcomes)
    metrics["rejected"] = sum(o.predicted < 0 for o in outcomes)
    return metrics


def gate_figures(cassava: dict[str, Any], negatives: Sequence[Outcome]) -> dict[str, Any]:
    """False rejections among cassava photos (from `cassava_metrics`), and rejections among the others."""
    figures: dict[str, Any] = {"false_rejection_rate": round(cassava["rejected"] / max(cassava["photos"], 1), 4)}
    if negatives:
        figures["negatives"] = len(negatives)
        figures["negative_rejection_rate"] = round(sum(o.predicted < 0 for o in negatives) / len(negatives), 4)
    return figures


def slice_metrics(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """Accuracy where it matters in the field: dark vs bright photos, small vs large leaves in the frame."""
    slices: dict[str, Callable[[dict[str, float]], bool]] = {
        "dark": lambda s: s["luma_mean"] < DARK_LUMA,
        "bright": lambda s: s["luma_mean"] >= DARK_LUMA,
        "small_leaf": lambda s: s["green_fraction"] < SMALL_LEAF_GREEN,
        "large_leaf": lambda s: s["green_fraction"] >= SMALL_LEAF_GREEN,
    }
    report = {}
    for name, inside in slices.items():
        members = [o for o in outcomes if o.stats is not None and inside(o.stats)]
        right = sum(o.predicted == o.truth for o in members)
        report[name] = {"photos": len(members), "accuracy": round(right / len(members), 4) if members else 0.0}
    return report


# ../shared/data names a negative <kind>_<id>.jpg; the kinds its README lists, so the report can say which fool us.
NEGATIVE_KINDS = (
    "banana_leaf", "cotton_leaf", "tomato_leaf", "potato_leaf", "apple_leaf", "maize_leaf", "cocoa_tree",
    "fruit_plant", "cotton_plant", "field", "soil", "cassava_root", "hand", "person", "animal", "food", "coffee",
    "indoor_object", "vehicle", "outdoor_scene", "coins", "space",
)  # fmt: skip


def negative_kind(name: str) -> str:
    return next((kind for kind in NEGATIVE_KINDS if name.startswith(f"{kind}_")), "other")


def evaluate_dir(
    predictor: Predictor, data_dir: Path, limits: QualityThresholds, progress: bool = True
) -> tuple[dict[str, Any], list[Outcome]]:
    classes = list(predictor.classes)
    cassava = run_photos(predictor, scan(data_dir, classes), limits, progress=progress)
    report = cassava_metrics(cassava, classes)
    report["slices"] = slice_metrics(cassava)
    negatives = run_photos(predictor, negatives_beside(data_dir), limits, progress=progress)
    report |= gate_figures(report, negatives)
    report["rejections"] = dict(Counter(o.reason.value for o in cassava if o.reason))
    if negatives:
        report["negative_rejections"] = dict(Counter(o.reason.value for o in negatives if o.reason))
        kinds: dict[str, list[bool]] = {}
        for o in negatives:
            kinds.setdefault(negative_kind(o.path.name), []).append(o.predicted < 0)
        report["negative_rejection_by_kind"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(kinds.items())}
    report["leaf_gate"] = None if predictor.leaf_gate is None else {
        "inputs": predictor.leaf_gate.inputs, "threshold": round(predictor.leaf_gate.threshold, 6)}  # fmt: skip
    report["model_version"] = predictor.version
    report["tta_views"] = predictor.tta_views
    return report, cassava + negatives

"""Challenger against champion: both judged on the same photos (the frozen holdout, and labelled feedback kept out
of training), and a decision that promotes only a model that is better overall and no worse on any class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.checkpoint import Checkpoint
from ml.evaluate import Outcome, cassava_metrics, evaluate_dir, gate_figures
from ml.predictor import Predictor
from ml.quality import QualityThresholds

GATE_KEY = "negatives"  # the pseudo-class whose "recall" is the share of non-cassava photos turned away


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def judge(checkpoint: Checkpoint, sets: dict[str, Path], limits: QualityThresholds) -> dict[str, Any]:
    """Figures of one model on each evaluation set and on all of them pooled."""
    predictor = Predictor(checkpoint)
    classes = list(predictor.classes)
    figures: dict[str, Any] = {"version": checkpoint.version}
    pooled: list[Outcome] = []
    for name, folder in sets.items():
        report, outcomes = evaluate_dir(predictor, folder, limits, progress=False)
        figures[name] = brief(report)
        pooled += outcomes
    metrics = cassava_metrics([o for o in pooled if o.truth >= 0], classes)
    figures["pooled"] = brief(metrics | gate_figures(metrics, [o for o in pooled if o.truth < 0]))
    return figures


def brief(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("accuracy", "macro_f1", "photos", "rejected", "negative_rejection_rate", "false_rejection_rate")
    out = {key: report[key] for key in keep if key in report}
    out["recall"] = {name: row["recall"] for name, row in report.get("per_class", {}).items() if row["support"]}
    if "expected_calibration_error" in report:
        out["ece"] = report["expected_calibration_error"]
    return out


def decide(champion: dict[str, Any], challenger: dict[str, Any], min_gain: float, max_class_drop: float) -> Decision:
    """Promote when the challenger's pooled accuracy beats the champion's by `min_gain` and neither any class's
    recall nor the share of non-cassava photos turned away falls by more than `max_class_drop`."""
    old, new = champion["pooled"], challenger["pooled"]
    if not new.get("photos"):
        return Decision(False, "no evaluation photos: set MHOGO_HOLDOUT_DIR or collect labelled feedback")
    gain = new["accuracy"] - old["accuracy"]
    if gain < min_gain:
        return Decision(False, f"accuracy {new['accuracy']:.3f} vs champion {old['accuracy']:.3f}: "
                               f"gain {gain:+.3f} below the {min_gain:+.3f} required")  # fmt: skip
    drops = _drops(old, new)
    worst = [f"{name} {drop:+.3f}" for name, drop in drops if drop < -max_class_drop]
    if worst:
        return Decision(False, f"accuracy gain {gain:+.3f}, but {', '.join(worst)} falls by more than "
                               f"{max_class_drop:.3f}")  # fmt: skip
    return Decision(True, f"accuracy {new['accuracy']:.3f} vs champion {old['accuracy']:.3f} ({gain:+.3f}); "
                          f"no class falls by more than {max_class_drop:.3f}")  # fmt: skip


def _drops(old: dict[str, Any], new: dict[str, Any]) -> Sequence[tuple[str, float]]:
    pairs = [(name, new["recall"].get(name, 0.0) - recall) for name, recall in old["recall"].items()]
    if "negative_rejection_rate" in old and "negative_rejection_rate" in new:
        pairs.append((GATE_KEY, new["negative_rejection_rate"] - old["negative_rejection_rate"]))
    return pairs

"""Input drift: how far the photos in the field have moved from the ones the serving model was trained on.

The reference is taken at training time from the training photos' image statistics (the same figures the quality
gate reads) and the class mix of their labels; live figures come from the jobs of a time window. The score is the
population stability index (PSI) over the reference's decile bins: below 0.1 nothing moved, 0.1 to 0.25 a little,
above 0.25 the inputs are not what the model learnt on.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# Not the clipped shares: zero on most photos, so a recompression moves them across a bin edge and reads as drift.
DRIFT_STATS = ("luma_mean", "luma_std", "red_mean", "green_mean", "blue_mean", "sharpness", "green_fraction")
BINS = 10
SMOOTHING = 0.5  # added to every bin's count (Jeffreys): an empty bin in a small window must not read as drift


def reference(stats: Sequence[Mapping[str, float]], class_counts: Mapping[str, int]) -> dict[str, Any]:
    """Bin edges at the deciles of each statistic (ties merged) and the training photos' share in each bin."""
    figures: dict[str, Any] = {}
    for name in DRIFT_STATS:
        values = np.array([row[name] for row in stats if name in row], dtype=np.float64)
        if len(values) < BINS:
            continue
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        figures[name] = {"edges": edges.round(6).tolist(), "expected": _shares(values, edges)}
    total = sum(class_counts.values())
    mix = {label: count / total for label, count in class_counts.items()} if total else {}
    return {"photos": len(stats), "stats": figures, "class_mix": mix}


def _shares(values: np.ndarray, edges: np.ndarray | Sequence[float]) -> list[float]:
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    smoothed = counts + SMOOTHING
    return [round(float(share), 6) for share in smoothed / smoothed.sum()]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True) if a > 0 and e > 0)


def drift_scores(
    ref: Mapping[str, Any], stats: Sequence[Mapping[str, float]], predicted: Iterable[str]
) -> dict[str, float]:
    """PSI of each statistic, `max` over them, and `class_mix` of the predicted labels against the training mix."""
    scores: dict[str, float] = {}
    for name, figure in ref.get("stats", {}).items():
        values = np.array([row[name] for row in stats if name in row], dtype=np.float64)
        if len(values):
            scores[name] = round(psi(figure["expected"], _shares(values, figure["edges"])), 4)
    if scores:
        scores["max"] = max(scores.values())
    mix = ref.get("class_mix") or {}
    labels = Counter(predicted)
    total = sum(labels.values())
    if mix and total:
        classes = sorted(mix)
        smoothed = {c: (labels[c] + SMOOTHING) / (total + SMOOTHING * len(classes)) for c in classes}
        scores["class_mix"] = round(psi([mix[c] for c in classes], [smoothed[c] for c in classes]), 4)
    return scores

"""Classification metrics in plain torch. A rejected photo is a prediction of its own (column `rejected` of the
confusion matrix): it counts as wrong for accuracy and recall, and as no prediction for precision."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch

REJECTED = "rejected"


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C + 1) counts: rows the true class, columns the predicted class, the last column `rejected` (-1)."""
    columns = num_classes + 1
    predicted = torch.where(predictions < 0, torch.full_like(predictions, num_classes), predictions)
    index = targets * columns + predicted
    return torch.bincount(index, minlength=num_classes * columns).reshape(num_classes, columns)


def expected_calibration_error(confidences: torch.Tensor, correct: torch.Tensor, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by how many predictions fall in each."""
    if len(confidences) == 0:
        return 0.0
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidences > low) & (confidences <= high)
        if inside.any():
            gap = correct[inside].float().mean() - confidences[inside].mean()
            total += float(gap.abs()) * int(inside.sum()) / len(confidences)
    return total


def reliability(confidences: torch.Tensor, correct: torch.Tensor, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: its range, how many predictions, their mean confidence and their accuracy."""
    edges = torch.linspace(0, 1, bins + 1)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (confidences > low) & (confidences <= high)
        count = int(inside.sum())
        rows.append({
            "low": round(float(low), 2),
            "high": round(float(high), 2),
            "count": count,
            "confidence": round(float(confidences[inside].mean()), 4) if count else 0.0,
            "accuracy": round(float(correct[inside].float().mean()), 4) if count else 0.0,
        })  # fmt: skip
    return rows


def summarize(targets: torch.Tensor, predictions: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix.
    `predictions` holds a class index, or -1 for a rejected photo."""
    n = len(classes)
    matrix = confusion_matrix(targets, predictions, n).double()
    true_pos = matrix.diag()
    precision = true_pos / matrix[:, :n].sum(dim=0).clamp(min=1)
    recall = true_pos / matrix.sum(dim=1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    present = matrix.sum(dim=1) > 0
    return {
        "accuracy": round(float(true_pos.sum() / matrix.sum().clamp(min=1)), 4),
        "macro_f1": round(float(f1[present].mean()), 4) if bool(present.any()) else 0.0,
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(matrix[i].sum()),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": {
            "rows": list(classes),
            "columns": [*classes, REJECTED],
            "counts": matrix.long().tolist(),
        },
    }

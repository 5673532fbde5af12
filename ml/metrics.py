"""Classification metrics from labels and predictions, in plain torch."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows = true class, columns = predicted class."""
    index = targets * num_classes + predictions
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(targets: torch.Tensor, predictions: torch.Tensor, classes: Sequence[str]) -> dict[str, object]:
    matrix = confusion_matrix(targets, predictions, len(classes)).double()
    true_pos = matrix.diag()
    precision = true_pos / matrix.sum(dim=0).clamp(min=1)
    recall = true_pos / matrix.sum(dim=1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    present = matrix.sum(dim=1) > 0
    return {
        "accuracy": float(true_pos.sum() / matrix.sum().clamp(min=1)),
        "macro_f1": float(f1[present].mean()) if bool(present.any()) else 0.0,
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(matrix[i].sum()),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": matrix.long().tolist(),
    }

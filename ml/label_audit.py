"""Training labels that are probably wrong: a classifier on fixed features (the served model's embeddings), fitted
k times, each time without one fold, gives every photo out-of-fold class probabilities (from a model that never saw
the photo's label); cleanlab's confident learning then flags the photos whose given label those probabilities find
unlikely. Pure: features and labels in, flagged indices out (core.label_audit feeds it and queues what it finds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ml.linear import fit_logistic, standardiser

L2 = 1e-3


@dataclass(frozen=True)
class LabelIssue:
    index: int
    given: int
    suggested: int
    self_confidence: float  # the out-of-fold probability of the given label
    suggested_probability: float


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified folds: each class's photos dealt round the folds in a shuffled order."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assignment[members] = np.arange(len(members)) % folds
    return assignment


def out_of_fold_probabilities(
    features: torch.Tensor, labels: np.ndarray, num_classes: int, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """(N, D) features, (N,) labels -> (N, C) probabilities, each row from a fit that left its photo out."""
    assignment = fold_of(labels, folds, seed)
    probabilities = np.zeros((len(labels), num_classes))
    targets = torch.as_tensor(labels, dtype=torch.long)
    for fold in range(folds):
        held = torch.as_tensor(assignment == fold)
        if not held.any():
            continue
        mean, scale = standardiser(features[~held])
        head = fit_logistic((features[~held] - mean) / scale, targets[~held], num_classes, L2)
        with torch.no_grad():
            probabilities[held.numpy()] = torch.softmax(head((features[held] - mean) / scale), dim=1).numpy()
    return probabilities


def label_issues(
    features: torch.Tensor, labels: np.ndarray, num_classes: int, folds: int = 5, seed: int = 0
) -> list[LabelIssue]:
    """The photos cleanlab flags as probably mislabelled, most certain first."""
    from cleanlab.filter import find_label_issues

    probabilities = out_of_fold_probabilities(features, labels, num_classes, folds, seed)
    flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    return [LabelIssue(int(i), int(labels[i]), int(probabilities[i].argmax()), float(probabilities[i, labels[i]]),
                       float(probabilities[i].max())) for i in flagged]  # fmt: skip

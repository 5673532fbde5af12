"""Training labels that are probably wrong (ml.label_audit): out-of-fold probabilities never come from a fit that saw
the photo, and cleanlab finds labels flipped on purpose."""

from __future__ import annotations

import numpy as np
import torch

from ml.label_audit import fold_of, label_issues, out_of_fold_probabilities


def clusters(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(3, 8))
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + rng.normal(0, 1, size=(60, 8))
    return torch.as_tensor(features, dtype=torch.float32), labels


def test_folds_are_stratified_and_every_photo_is_held_out_once() -> None:
    _, labels = clusters()
    folds = fold_of(labels, 5, seed=0)
    for label in range(3):
        assert sorted(np.bincount(folds[labels == label])) == [4, 4, 4, 4, 4]
    _, labels = clusters()
    probabilities = out_of_fold_probabilities(*clusters(), num_classes=3)
    assert probabilities.shape == (60, 3)
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.95  # well separated: the folds learn them


def test_flipped_labels_are_found_and_little_else() -> None:
    features, labels = clusters()
    given = labels.copy()
    given[[3, 27]] = [1, 2]  # two photos of class 0 and 1 given the wrong class
    found = label_issues(features, given, num_classes=3)
    flagged = {issue.index for issue in found}
    assert {3, 27} <= flagged
    assert len(flagged) <= 4
    issue = next(issue for issue in found if issue.index == 3)
    assert (issue.given, issue.suggested) == (1, 0)
    assert issue.self_confidence < 0.2 < issue.suggested_probability

"""Logistic regression on fixed features, in torch: class-balanced, L2-regularised, fitted to convergence by L-BFGS.

Used by the leaf gate (cassava leaf or not, on the classifier's own features) and by the backbone linear probe.
"""

from __future__ import annotations

import torch
from torch import nn


def fit_logistic(x: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float, max_iter: int = 200) -> nn.Linear:
    """(N, D) standardised features and (N,) class indices -> a Linear(D, num_classes) giving the logits.

    Every class weighs the same in the loss whatever its count; the start is zero, so the fit is deterministic.
    """
    counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1)
    weights = (1 / counts)[labels]
    head = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=max_iter)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        per_row = nn.functional.cross_entropy(head(x), labels, reduction="none")
        value = (per_row * weights).sum() / weights.sum() + l2 * head.weight.pow(2).sum()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    with torch.enable_grad():
        optimizer.step(loss)  # type: ignore[no-untyped-call]
    return head.requires_grad_(False)


def standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale per column, so an L2 penalty weighs every feature alike."""
    return x.mean(dim=0), x.std(dim=0) + 1e-6

"""Several fine-tuned backbones served as one model: the embedding is theirs side by side, the answer their
geometric mean.

On the five cross-validation folds a Lite1 soup and a Lite2 soup, each 0.69 accuracy alone, reach 0.73 together
(bench/gate_study.py with both folders of fold models). Members must share the preprocessing; the leaf gate reads
the joined embedding like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ml.model import CassavaNet


class Ensemble(nn.Module):
    """(B, 3, S, S) -> (B, C) log-probabilities: the mean of each member's log-softmax. Its softmax is the
    normalised geometric mean of the members' probabilities, which on the folds beat their arithmetic mean."""

    def __init__(self, members: Sequence[CassavaNet]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs two members or more")
        self.members = nn.ModuleList(members)
        self.widths = [member.config.head_channels for member in members]

    def nets(self) -> list[CassavaNet]:
        return [cast(CassavaNet, member) for member in self.members]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, sum of the members' head_channels): every member's pooled embedding, joined."""
        return torch.cat([member.features(x) for member in self.nets()], dim=-1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Joined embedding -> (B, C) mean of the members' log-probabilities (usable as logits)."""
        parts = torch.split(features, self.widths, dim=-1)
        return torch.stack([member.classify(part).log_softmax(dim=-1)
                            for member, part in zip(self.nets(), parts, strict=True)]).mean(dim=0)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

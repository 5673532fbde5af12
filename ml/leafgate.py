"""Is this a cassava leaf at all? The classifier answers "which disease?" with confidence about a banana leaf, a
thumb or a plate of food; the leaf gate turns those away before the answer reaches the farmer.

It is a logistic regression on what the classifier already computes for the photo: the pooled embedding (what the
network sees) and the energy of its logits (how familiar the photo looks to the head, an out-of-distribution score),
fitted on cassava photos and photos of other things (ml/gatefit.py). It costs one dot product per photo, runs in
the same forward pass as the diagnosis, and travels inside the checkpoint and the phone build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

GATE_INPUTS = ("embedding+energy", "embedding", "energy", "max_probability")


def gate_features(inputs: str, embedding: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B, D) embedding and (B, C) logits -> (B, F) inputs of the gate."""
    energy = torch.logsumexp(logits, dim=-1, keepdim=True)  # minus the energy: high for familiar photos
    if inputs == "embedding+energy":
        return torch.cat([embedding, energy], dim=-1)
    if inputs == "embedding":
        return embedding
    if inputs == "energy":
        return energy
    if inputs == "max_probability":
        return logits.softmax(dim=-1).amax(dim=-1, keepdim=True)
    raise ValueError(f"unknown gate inputs {inputs!r}; choose from {', '.join(GATE_INPUTS)}")


@dataclass
class LeafGate:
    """P(cassava leaf) = sigmoid(weight . standardised inputs + bias); below `threshold` the photo is turned away."""

    inputs: str
    mean: torch.Tensor  # (F,)
    scale: torch.Tensor  # (F,)
    weight: torch.Tensor  # (F,)
    bias: float
    threshold: float
    fitted: dict[str, Any] = field(default_factory=dict)  # what it was fitted on, and its out-of-fold figures

    def probability(self, embedding: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(B, D) embedding, (B, C) logits -> (B,) probability that the photo shows a cassava leaf."""
        x = (gate_features(self.inputs, embedding, logits) - self.mean) / self.scale
        return torch.sigmoid(x @ self.weight + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "mean": self.mean,
            "scale": self.scale,
            "weight": self.weight,
            "bias": self.bias,
            "threshold": self.threshold,
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LeafGate:
        return cls(**raw)

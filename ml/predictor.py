"""Prediction: a loaded model plus its preprocessing, turning prepared images into labelled probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ml.checkpoint import Checkpoint
from ml.imaging import PreprocessConfig
from ml.leafgate import LeafGate
from ml.prediction import Prediction, make_prediction
from ml.tensors import model_input

# Test-time augmentation views, as flips of the (B, 3, H, W) batch: a leaf has no up, down, left or right.
TTA_FLIPS: dict[int, tuple[tuple[int, ...], ...]] = {1: ((),), 2: ((), (3,)), 4: ((), (3,), (2,), (2, 3))}


@dataclass(frozen=True)
class Outputs:
    probabilities: torch.Tensor  # (B, C), averaged over the test-time views
    embedding: torch.Tensor  # (B, D) pooled features, averaged over the views
    logits: torch.Tensor  # (B, C), averaged over the views
    leaf: torch.Tensor | None  # (B,) probability of a cassava leaf, when the model has a leaf gate


class Predictor:
    """Holds one model in eval mode. Build it once per process: loading costs far more than a prediction."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.model = checkpoint.model.eval()
        self.classes = checkpoint.classes
        self.preprocess: PreprocessConfig = checkpoint.preprocess
        self.version = checkpoint.version
        self.tta_views = checkpoint.tta_views
        self.leaf_gate: LeafGate | None = checkpoint.leaf_gate

    @torch.inference_mode()
    def outputs(self, batch: torch.Tensor) -> Outputs:
        """(B, 3, S, S) model inputs -> class probabilities and leaf score, in one pass over the test-time views."""
        views = [batch.flip(dims) if dims else batch for dims in TTA_FLIPS[self.tta_views]]
        embedding = self.model.features(torch.cat(views))  # (V * B, D)
        logits = self.model.classify(embedding)  # (V * B, C)
        shape = (len(views), len(batch), -1)
        probs = logits.softmax(dim=-1).reshape(shape).mean(dim=0)  # (B, C)
        mean_embedding, mean_logits = embedding.reshape(shape).mean(dim=0), logits.reshape(shape).mean(dim=0)
        leaf = self.leaf_gate.probability(mean_embedding, mean_logits) if self.leaf_gate else None
        return Outputs(probs, mean_embedding, mean_logits, leaf)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) model inputs -> (B, C) class probabilities, averaged over the test-time views."""
        return self.outputs(batch).probabilities

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Prepared (working-size, brightness-normalised) images -> one prediction each."""
        batch = torch.stack([model_input(image, self.preprocess) for image in images])  # (B, 3, S, S)
        out = self.outputs(batch)
        leaf = out.leaf.tolist() if out.leaf is not None else [None] * len(images)
        return [self._prediction(row, score) for row, score in zip(out.probabilities, leaf, strict=True)]

    def rejects(self, leaf_probability: float | None) -> bool:
        """Whether the leaf gate turns away a photo with this score."""
        if self.leaf_gate is None or leaf_probability is None:
            return False
        return leaf_probability < self.leaf_gate.threshold

    def _prediction(self, probs: torch.Tensor, leaf: float | None) -> Prediction:
        threshold = self.leaf_gate.threshold if self.leaf_gate else None
        return make_prediction(self.classes, probs.tolist(), self.version, leaf, threshold)

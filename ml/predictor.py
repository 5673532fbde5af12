"""Prediction: a loaded model plus its preprocessing, turning prepared images into labelled probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ml.checkpoint import Checkpoint, load_checkpoint
from ml.imaging import PreprocessConfig
from ml.tensors import model_input

# Test-time augmentation views, as flips of the (B, 3, H, W) batch: a leaf has no up, down, left or right.
TTA_FLIPS: dict[int, tuple[tuple[int, ...], ...]] = {1: ((),), 2: ((), (3,)), 4: ((), (3,), (2,), (2, 3))}


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str


class Predictor:
    """Holds one model in eval mode. Build it once per process: loading costs far more than a prediction."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.model = checkpoint.model.eval()
        self.classes = checkpoint.classes
        self.preprocess: PreprocessConfig = checkpoint.preprocess
        self.version = checkpoint.version
        self.tta_views = checkpoint.tta_views

    @classmethod
    def from_file(cls, path: Path, threads: int | None = None) -> Predictor:
        if threads:
            torch.set_num_threads(threads)
        return cls(load_checkpoint(path))

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) model inputs -> (B, C) class probabilities, averaged over the test-time views."""
        views = [batch.flip(dims) if dims else batch for dims in TTA_FLIPS[self.tta_views]]
        probs = self.model(torch.cat(views)).softmax(dim=-1)  # (V * B, C)
        mean: torch.Tensor = probs.reshape(len(views), len(batch), -1).mean(dim=0)  # (B, C)
        return mean

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Prepared (working-size, brightness-normalised) images -> one prediction each."""
        batch = torch.stack([model_input(image, self.preprocess) for image in images])  # (B, 3, S, S)
        return [self._prediction(row) for row in self.probabilities(batch)]

    def _prediction(self, probs: torch.Tensor) -> Prediction:
        best = int(probs.argmax())
        return Prediction(
            label=self.classes[best],
            confidence=float(probs[best]),
            probabilities={name: round(float(p), 6) for name, p in zip(self.classes, probs, strict=True)},
            model_version=self.version,
        )

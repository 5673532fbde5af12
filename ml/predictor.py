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

    @classmethod
    def from_file(cls, path: Path, threads: int | None = None) -> Predictor:
        if threads:
            torch.set_num_threads(threads)
        return cls(load_checkpoint(path))

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Prepared (working-size, brightness-normalised) images -> one prediction each."""
        batch = torch.stack([model_input(image, self.preprocess) for image in images])  # (B, 3, S, S)
        probs = self.model(batch).softmax(dim=-1)  # (B, C)
        return [self._prediction(row) for row in probs]

    def _prediction(self, probs: torch.Tensor) -> Prediction:
        best = int(probs.argmax())
        return Prediction(
            label=self.classes[best],
            confidence=float(probs[best]),
            probabilities={name: round(float(p), 6) for name, p in zip(self.classes, probs, strict=True)},
            model_version=self.version,
        )

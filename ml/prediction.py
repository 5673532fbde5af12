"""A prediction, and what a model must offer to make one: no torch here, so a process serving an ONNX build stays
small."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from ml.imaging import PreprocessConfig


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    leaf_probability: float | None = None  # the leaf gate's score; None for a model without a gate
    not_a_leaf: bool = False  # the leaf gate turns the photo away: do not show the label


class Classifier(Protocol):
    """What `ml.diagnose.examine` needs of a model: the server's `Predictor`, or the phone's ONNX build."""

    version: str
    preprocess: PreprocessConfig

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]: ...


def make_prediction(
    classes: Sequence[str], probs: Sequence[float], version: str, leaf: float | None, threshold: float | None
) -> Prediction:
    """One photo's class probabilities and leaf score -> its Prediction: the server's and the phone build's alike."""
    best = max(range(len(probs)), key=probs.__getitem__)
    return Prediction(
        label=classes[best],
        confidence=float(probs[best]),
        probabilities={name: round(float(p), 6) for name, p in zip(classes, probs, strict=True)},
        model_version=version,
        leaf_probability=None if leaf is None else round(leaf, 6),
        not_a_leaf=leaf is not None and threshold is not None and leaf < threshold,
    )

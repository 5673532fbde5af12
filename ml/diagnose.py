"""One photo through the stages, in one process: decode -> prepare -> quality gate -> model and leaf gate. The
inference worker, `mhogo predict`, the phone build and the benchmarks all run this one function."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ml.imaging import decode, prepare
from ml.prediction import Classifier, Prediction
from ml.quality import QualityThresholds, leaf_verdict, quality_gate
from schemas.errors import BadInput
from schemas.reasons import RejectReason


@dataclass
class Examined:
    """What the stages found: a reason to turn the photo away, or the model's prediction (or both, when the leaf
    gate turned it away); the photo's figures; and the milliseconds each stage took."""

    reason: RejectReason | None = None
    prediction: Prediction | None = None
    stats: dict[str, float] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


def _since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def examine(data: bytes, classifier: Classifier, limits: QualityThresholds, max_pixels: int) -> Examined:
    """The photo's bytes are decoded once; the prepared image goes straight to the model."""
    examined = Examined()
    start = time.perf_counter()
    try:
        image = decode(data, max_pixels)
    except BadInput:
        examined.reason = RejectReason.UNREADABLE
        return examined
    examined.timings_ms["decode"] = _since(start)
    start = time.perf_counter()
    prepared = prepare(image, classifier.preprocess)
    examined.stats = dict(prepared.stats)
    examined.reason = quality_gate(prepared.stats, limits)
    examined.timings_ms["prepare"] = _since(start)
    if examined.reason is not None:
        return examined
    start = time.perf_counter()
    prediction = classifier.predict([prepared.image])[0]
    examined.timings_ms["model"] = _since(start)
    examined.prediction = prediction
    if prediction.leaf_probability is not None:  # kept with the photo's figures: its drift tells operators a lot
        examined.stats["leaf_probability"] = prediction.leaf_probability
    examined.reason = leaf_verdict(prepared.stats, not prediction.not_a_leaf, limits)
    return examined


def diagnose(data: bytes, predictor: Classifier, limits: QualityThresholds, max_pixels: int) -> dict[str, Any]:
    """A dict with `status` ('classified' or 'rejected'), `label`, `confidence`, `probabilities`, `reason`,
    `message`, `model_version` and, for a model with a leaf gate, `leaf_probability`."""
    examined = examine(data, predictor, limits, max_pixels)
    prediction = examined.prediction
    outcome: dict[str, Any] = {
        "status": "rejected",
        "label": None,
        "confidence": None,
        "probabilities": None,
        "reason": None,
        "message": None,
        "model_version": predictor.version,
        "leaf_probability": None if prediction is None else prediction.leaf_probability,
    }
    if examined.reason is not None:
        return outcome | {"reason": examined.reason.value, "message": examined.reason.message}
    assert prediction is not None
    return outcome | {
        "status": "classified",
        "label": prediction.label,
        "confidence": round(prediction.confidence, 6),
        "probabilities": prediction.probabilities,
    }

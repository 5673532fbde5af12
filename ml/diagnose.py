"""One photo, in-process, through the same stages the workers run: decode -> prepare -> quality gate -> model and
leaf gate."""

from __future__ import annotations

from typing import Any

from core.errors import BadInput
from ml.imaging import decode, prepare
from ml.predictor import Classifier
from ml.quality import QualityThresholds, leaf_verdict, quality_gate
from schemas.reasons import RejectReason


def diagnose(data: bytes, predictor: Classifier, limits: QualityThresholds, max_pixels: int) -> dict[str, Any]:
    """A dict with `status` ('classified' or 'rejected'), `label`, `confidence`, `probabilities`, `reason`,
    `message`, `model_version` and, for a model with a leaf gate, `leaf_probability`."""
    outcome: dict[str, Any] = {
        "status": "rejected",
        "label": None,
        "confidence": None,
        "probabilities": None,
        "reason": None,
        "message": None,
        "model_version": predictor.version,
        "leaf_probability": None,
    }
    try:
        prepared = prepare(decode(data, max_pixels), predictor.preprocess)
    except BadInput:
        reason: RejectReason | None = RejectReason.UNREADABLE
    else:
        reason = quality_gate(prepared.stats, limits)
    if reason is not None:
        return outcome | {"reason": reason.value, "message": reason.message}
    prediction = predictor.predict([prepared.image])[0]
    reason = leaf_verdict(prepared.stats, not prediction.not_a_leaf, limits)
    if reason is not None:
        score = prediction.leaf_probability
        return outcome | {"reason": reason.value, "message": reason.message, "leaf_probability": score}
    return outcome | {
        "status": "classified",
        "label": prediction.label,
        "confidence": round(prediction.confidence, 6),
        "probabilities": prediction.probabilities,
        "leaf_probability": prediction.leaf_probability,
    }

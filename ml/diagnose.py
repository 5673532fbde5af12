"""One photo, in-process, through the same stages the workers run: decode -> prepare -> quality gate -> model."""

from __future__ import annotations

from typing import Any

from core.errors import BadInput
from ml.imaging import decode, prepare
from ml.predictor import Predictor
from ml.quality import QualityThresholds, quality_gate
from schemas.reasons import RejectReason


def diagnose(data: bytes, predictor: Predictor, limits: QualityThresholds, max_pixels: int) -> dict[str, Any]:
    """A dict with `status` ('classified' or 'rejected'), `label`, `confidence`, `probabilities`, `reason`,
    `message` and `model_version`."""
    outcome: dict[str, Any] = {
        "status": "rejected",
        "label": None,
        "confidence": None,
        "probabilities": None,
        "reason": None,
        "message": None,
        "model_version": predictor.version,
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
    return outcome | {
        "status": "classified",
        "label": prediction.label,
        "confidence": round(prediction.confidence, 6),
        "probabilities": prediction.probabilities,
    }

"""One photo through the stages, in one process: decode -> prepare -> quality gate -> model and leaf gate. The
inference worker, `mhogo predict`, the phone build and the benchmarks all run this one function."""

from __future__ import annotations

import time

from ml.imaging import decode, prepare
from ml.prediction import Classifier
from ml.quality import QualityThresholds, leaf_verdict, quality_gate
from schemas.errors import BadInput
from schemas.findings import Finding
from schemas.reasons import RejectReason


def _since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def examine(data: bytes, classifier: Classifier, limits: QualityThresholds, max_pixels: int) -> Finding:
    """What the stages find on the photo's bytes, which are decoded once; the prepared image goes straight to the
    model. A photo the leaf gate turns away keeps the model's version and the gate's score, not its label."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    try:
        image = decode(data, max_pixels)
    except BadInput:
        return Finding(reason=RejectReason.UNREADABLE)
    timings["decode"] = _since(start)
    start = time.perf_counter()
    prepared = prepare(image, classifier.preprocess)
    stats = dict(prepared.stats)
    reason = quality_gate(prepared.stats, limits)
    timings["prepare"] = _since(start)
    if reason is not None:
        return Finding(reason=reason, stats=stats, timings_ms=timings)
    start = time.perf_counter()
    prediction = classifier.predict([prepared.image])[0]
    timings["model"] = _since(start)
    if prediction.leaf_probability is not None:  # kept with the photo's figures: its drift tells operators a lot
        stats["leaf_probability"] = prediction.leaf_probability
    reason = leaf_verdict(prepared.stats, not prediction.not_a_leaf, limits)
    if reason is not None:
        return Finding(reason=reason, model_version=prediction.model_version, stats=stats, timings_ms=timings)
    return Finding(label=prediction.label, confidence=prediction.confidence, probabilities=prediction.probabilities,
                   model_version=prediction.model_version, stats=stats, timings_ms=timings)  # fmt: skip

"""What mhogo found on one photo: the one result type, from the stages that look at it (`ml.diagnose.examine`) to the
job's row (`core.jobs.finish`), `mhogo predict --json` and the phone's provisional answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.reasons import RejectReason
from schemas.statuses import JobStatus


@dataclass(frozen=True)
class Finding:
    """A photo classified (`label`, its confidence and every class's probability) or turned away (`reason`); the
    version of the model that looked at it, if one did (the leaf gate turns photos away after the model ran); the
    photo's figures (`stats`, the leaf gate's score among them) and the milliseconds each stage took."""

    reason: RejectReason | None = None
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    model_version: str | None = None
    stats: dict[str, float] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> JobStatus:
        return JobStatus.CLASSIFIED if self.reason is None else JobStatus.REJECTED

    @property
    def leaf_probability(self) -> float | None:
        """The leaf gate's score, for a model that has a leaf gate and got to see the photo."""
        return self.stats.get("leaf_probability")

    def row(self) -> dict[str, Any]:
        """The job's columns this finding fills."""
        return {
            "status": self.status.value,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "reason_code": None if self.reason is None else self.reason.value,
            "reason": None if self.reason is None else self.reason.message,
            "input_stats": self.stats,
            "timings_ms": self.timings_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        """As JSON shows it (`mhogo predict --json`, the phone's outbox): the answer, with the reason's message a
        farmer reads."""
        return {
            "status": self.status.value,
            "label": self.label,
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "probabilities": self.probabilities,
            "reason": None if self.reason is None else self.reason.value,
            "message": None if self.reason is None else self.reason.message,
            "model_version": self.model_version,
            "leaf_probability": self.leaf_probability,
        }

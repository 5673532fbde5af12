"""The quality gate: can this photo be diagnosed at all? Each failure maps to a reason the farmer understands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.reasons import RejectReason


@dataclass(frozen=True)
class QualityThresholds:
    """Limits on the working-size image's statistics; the values live in settings (core/config.py)."""

    min_side_px: int
    dark_luma: float
    bright_luma: float
    bright_clipped_fraction: float
    blur_laplacian_var: float
    min_green_fraction: float = 0.0  # share of plant-green pixels below which the leaf is too small in the frame


def quality_gate(stats: Mapping[str, float], limits: QualityThresholds) -> RejectReason | None:
    """The first reason to turn the photo away, in the order a farmer should fix them, or None if it passes."""
    if min(stats["width"], stats["height"]) < limits.min_side_px:
        return RejectReason.TOO_SMALL
    if stats["luma_mean"] < limits.dark_luma:
        return RejectReason.TOO_DARK
    if stats["luma_mean"] > limits.bright_luma or stats["clipped_white"] > limits.bright_clipped_fraction:
        return RejectReason.TOO_BRIGHT
    if stats["sharpness"] < limits.blur_laplacian_var:
        return RejectReason.BLURRY
    return None


def leaf_verdict(stats: Mapping[str, float], is_leaf: bool, limits: QualityThresholds) -> RejectReason | None:
    """After the model: not a cassava leaf at all (the leaf gate), or a cassava leaf too small in the frame (too
    little of the photo is plant green). The order matters: "come closer to the leaf" is wrong advice for a photo
    of soil or of a dog, which also have little green."""
    if not is_leaf:
        return RejectReason.NOT_CASSAVA_LEAF
    if stats.get("green_fraction", 1.0) < limits.min_green_fraction:
        return RejectReason.LEAF_TOO_SMALL
    return None

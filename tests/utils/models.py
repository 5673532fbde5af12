"""A second real model for registry and hot-swap tests: trained for two small batches on the sample photos."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from core.config import settings
from ml.train import TrainConfig, train
from tests.utils.factories import SAMPLES


@cache
def tiny_model(folder: Path) -> Path:
    out = folder / "tiny.pt"
    if not out.exists():
        train(SAMPLES, out, TrainConfig(dry_run=True, seed=7), settings.quality_thresholds, made_by="test")
    return out

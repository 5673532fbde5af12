"""The phone build run the way a phone app runs it, offline: the ONNX graph under ONNX Runtime, and around it the
preprocessing and thresholds its JSON file writes down. Its answers go through the same `diagnose` as the server's,
so a photo rejected on the server (too dark, not a cassava leaf) is rejected on the phone with the same reason."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ModelError
from ml.diagnose import diagnose
from ml.export import OnnxPredictor, phone_input
from ml.imaging import PreprocessConfig
from ml.predictor import Prediction, make_prediction
from ml.quality import QualityThresholds

MAX_PIXELS = 50_000_000  # as the server's default MHOGO_MAX_IMAGE_PIXELS


class PhoneBuild:
    """An exported build (`mhogo export V --format onnx`): `model.onnx` and `model.json` beside it."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        spec: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
        if hashlib.sha256(path.read_bytes()).hexdigest() != spec["sha256"]:
            raise ModelError(f"{path} is not the build {path.with_suffix('.json')} describes (sha256 differs)")
        self.path = path
        self.version: str = spec["model_version"]
        self.precision: str = spec["precision"]
        self.classes: list[str] = spec["classes"]
        self.preprocess = PreprocessConfig(**spec["preprocessing"])
        self.limits = QualityThresholds(**spec["quality_thresholds"])
        gate = spec.get("leaf_gate")
        self.leaf_threshold: float | None = gate["threshold"] if gate else None
        self.runner = OnnxPredictor(path, threads)

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Prepared images -> one prediction each, as `ml.predictor.Predictor.predict` gives on the server."""
        pixels = np.stack([phone_input(image, self.preprocess) for image in images])
        probabilities, leaf = self.runner.run(pixels)
        return [
            make_prediction(
                self.classes,
                row.tolist(),
                self.version,
                None if leaf is None else float(leaf[index]),
                self.leaf_threshold,
            )
            for index, row in enumerate(probabilities)
        ]

    def diagnose(self, data: bytes) -> dict[str, Any]:
        """A photo's bytes -> the same dict as `ml.diagnose.diagnose` (status, label or reason, ...)."""
        return diagnose(data, self, self.limits, MAX_PIXELS)

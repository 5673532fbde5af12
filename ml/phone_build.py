"""The phone build run the way a phone app runs it, offline: the ONNX graph under ONNX Runtime, and around it the
preprocessing and thresholds its JSON file writes down. Its answers go through the same `examine` as the server's,
so a photo rejected on the server (too dark, not a cassava leaf) is rejected on the phone with the same reason."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from PIL import Image

from ml.diagnose import examine
from ml.imaging import MAX_PIXELS, PreprocessConfig, center_square
from ml.prediction import Prediction, make_prediction
from ml.quality import QualityThresholds
from schemas.errors import ModelError
from schemas.findings import Finding


def phone_input(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Prepared image -> (S, S, 3) float32 0..255: the graph's input for one photo."""
    return np.asarray(center_square(image, config.input_size), dtype=np.float32)


class OnnxPredictor:
    """Runs an exported graph with onnxruntime, as a phone app would."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, 3) float32 -> (N, C) probabilities and (N,) leaf probability (None without a leaf gate), in one
        pass."""
        names = [output.name for output in self.session.get_outputs()]
        results = dict(zip(names, self.session.run(names, {"pixels": pixels}), strict=True))
        return results["probabilities"], results.get("leaf_probability")

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) float32 -> (N, C)."""
        result: np.ndarray = self.session.run(["probabilities"], {"pixels": pixels})[0]
        return result

    def leaf_probability(self, pixels: np.ndarray) -> np.ndarray | None:
        """(N, S, S, 3) float32 -> (N,), or None for a build without a leaf gate."""
        if "leaf_probability" not in {output.name for output in self.session.get_outputs()}:
            return None
        result: np.ndarray = self.session.run(["leaf_probability"], {"pixels": pixels})[0]
        return result


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

    def examine(self, data: bytes) -> Finding:
        """What the server would find on these bytes (`ml.diagnose.examine`), with this build and its thresholds."""
        return examine(data, self, self.limits, MAX_PIXELS)

    def diagnose(self, data: bytes) -> dict[str, Any]:
        """`examine`, as the JSON the phone's outbox keeps."""
        return self.examine(data).to_dict()

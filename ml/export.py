"""A build for the phone: the served model as ONNX, with normalisation and test-time flips folded into the graph,
and the rest of the preprocessing written down precisely in a JSON file beside it. Optionally int8-quantised.

    graph input   `pixels`: float32 (N, S, S, 3), RGB values 0..255, the centre square of the prepared photo
    graph output  `probabilities`: float32 (N, C), in the order of `classes` in the JSON
    graph output  `leaf_probability`: float32 (N,), when the model has a leaf gate; below the threshold in the JSON,
                  the photo is not a cassava leaf
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from ml.checkpoint import Checkpoint
from ml.predictor import TTA_FLIPS
from ml.quality import QualityThresholds

OPSET = 18


class ServingGraph(nn.Module):
    """(N, S, S, 3) RGB 0..255 -> (N, C) probabilities and, for a model with a leaf gate, (N,) the probability that
    the photo shows a cassava leaf: what a phone app feeds and reads."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.model = checkpoint.model.eval()
        self.mean = checkpoint.preprocess.mean
        self.std = checkpoint.preprocess.std
        self.flips = TTA_FLIPS[checkpoint.tta_views]
        self.gate = checkpoint.leaf_gate

    def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = (pixels.permute(0, 3, 1, 2) - self.mean) / self.std  # (N, 3, S, S)
        views = [x.flip(dims) if dims else x for dims in self.flips]
        embedding = self.model.features(torch.cat(views))  # (V * N, D): one pass, one copy of the weights
        logits = self.model.classify(embedding)  # (V * N, C)
        shape = (len(views), -1, logits.shape[-1])
        probs: torch.Tensor = logits.softmax(dim=-1).reshape(shape).mean(dim=0)  # (N, C)
        if self.gate is None:
            return probs
        mean_embedding = embedding.reshape(len(views), -1, embedding.shape[-1]).mean(dim=0)
        return probs, self.gate.probability(mean_embedding, logits.reshape(shape).mean(dim=0))


def output_names(checkpoint: Checkpoint) -> list[str]:
    return ["probabilities", "leaf_probability"] if checkpoint.leaf_gate else ["probabilities"]


def preprocessing_spec(checkpoint: Checkpoint, limits: QualityThresholds) -> dict[str, Any]:
    p = checkpoint.preprocess
    return {
        "steps": [
            "decode JPEG or PNG; apply the EXIF orientation; convert to RGB",
            f"resize so that the longer side is {p.work_size} px (Lanczos)",
            "statistics on that image: luma = 0.299 R + 0.587 G + 0.114 B; luma_mean, share of luma >= 250, "
            "variance of the 4-neighbour Laplacian of luma (sharpness); min(original width, height)",
            "quality gate (reject, with the reason, in this order): too_small if min side < min_side_px; too_dark "
            "if luma_mean < dark_luma; too_bright if luma_mean > bright_luma or share >= 250 above "
            "bright_clipped_fraction; blurry if sharpness < blur_laplacian_var",
            f"if luma_mean < {p.target_luma}: apply the curve 255 * (v / 255) ** g to each channel, with "
            f"g = max({p.max_gamma_lift}, ln({p.target_luma} / 255) / ln(luma_mean / 255))",
            f"resize so that the shorter side is {p.input_size} px (bilinear), crop the centre "
            f"{p.input_size} x {p.input_size}",
            "feed as float32 (1, S, S, 3) RGB 0..255; the graph normalises and averages the test-time flips",
            "if the graph has a leaf_probability output and it is below leaf_gate.threshold: reject as "
            "not_cassava_leaf; otherwise, if the share of pixels of the working-size image (before the lift) with "
            "2g - r - b > 0.05 (chromaticities of RGB + 1) is below min_green_fraction: reject as leaf_too_small",
        ],
        "preprocessing": p.to_dict(),
        "quality_thresholds": limits.__dict__,
        "tta_views": checkpoint.tta_views,
    }


@dataclass(frozen=True)
class Exported:
    path: Path
    size_bytes: int
    sha256: str


def export_onnx(
    checkpoint: Checkpoint, out: Path, limits: QualityThresholds, checkpoint_sha256: str | None = None
) -> Exported:
    """fp32 ONNX at `out`, and `out` with suffix .json describing inputs, outputs and preprocessing (and, when
    given, the sha256 of the checkpoint file it was made from)."""
    size = checkpoint.preprocess.input_size
    out.parent.mkdir(parents=True, exist_ok=True)
    graph = ServingGraph(checkpoint).eval()
    example = torch.zeros(2, size, size, 3)
    # The exporter lists every torchvision operator it cannot find; torchvision is not used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    torch.onnx.export(
        graph, (example,), str(out), input_names=["pixels"], output_names=output_names(checkpoint),
        dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},), opset_version=OPSET, dynamo=True,
        external_data=False, optimize=True, verbose=False,
    )  # fmt: skip
    return _finish(checkpoint, out, limits, "fp32", checkpoint_sha256)


class _Calibration(CalibrationDataReader):  # type: ignore[misc]
    """Feeds prepared photos to onnxruntime's static quantiser, one at a time."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self.batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"pixels": batch[None]}


def export_int8(
    checkpoint: Checkpoint,
    fp32: Path,
    out: Path,
    calibration: Sequence[np.ndarray],
    limits: QualityThresholds,
    checkpoint_sha256: str | None = None,
) -> Exported:
    """Static int8 quantisation (QDQ, per-channel weights) of the convolutional body, calibrated on real prepared
    photos. The head stays fp32 (`head_nodes`): the classifier layer, the softmax, the mean over test-time views and
    the leaf gate, a few thousand multiplications in all. Quantised, the leaf gate's score collapsed and every photo
    passed as a cassava leaf (measured on ../shared/data: 0 of 155 other photos turned away, against 155 in fp32),
    and the probabilities came out in steps of 1/256 that no longer summed to one."""
    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(out), _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
        nodes_to_exclude=head_nodes(onnx.load(str(prepared))),
    )  # fmt: skip
    prepared.unlink()
    return _finish(checkpoint, out, limits, "int8", checkpoint_sha256)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the pooled embedding: everything that is not an ancestor of the first matrix
    product on the way to `probabilities` (the classifier layer's input)."""
    producer = {output: node for node in model.graph.node for output in node.output}

    def ancestors(tensor: str) -> set[str]:
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            node = producer.get(stack.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                stack.extend(node.input)
        return seen

    to_probabilities = ancestors("probabilities")
    classifier = next(
        node for node in model.graph.node if node.name in to_probabilities and node.op_type in ("Gemm", "MatMul")
    )
    body = ancestors(classifier.input[0])
    return sorted(node.name for node in model.graph.node if node.name not in body)


def _finish(
    checkpoint: Checkpoint, out: Path, limits: QualityThresholds, precision: str, checkpoint_sha256: str | None
) -> Exported:
    data = out.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    spec = {
        "model_version": checkpoint.version,
        "checkpoint_sha256": checkpoint_sha256,
        "precision": precision,
        "sha256": sha,
        "opset": OPSET,
        "input": {"name": "pixels", "shape": ["N", checkpoint.preprocess.input_size,
                                              checkpoint.preprocess.input_size, 3], "type": "float32"},
        "output": {"name": "probabilities", "shape": ["N", len(checkpoint.classes)], "type": "float32"},
        "leaf_gate": None if checkpoint.leaf_gate is None else {
            "output": "leaf_probability", "shape": ["N"], "type": "float32",
            "threshold": checkpoint.leaf_gate.threshold, "reason": "not_cassava_leaf",
            "rule": "below the threshold the photo is not a cassava leaf: show the reason, not the label"},
        "classes": list(checkpoint.classes),
        **preprocessing_spec(checkpoint, limits),
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(spec, indent=2))
    return Exported(out, len(data), sha)

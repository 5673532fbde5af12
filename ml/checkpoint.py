"""Checkpoints: {state_dict, config, classes, preprocessing, version, meta}, loadable with `weights_only=True`."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ml.ensemble import Ensemble
from ml.files import atomic_write, file_sha256
from ml.imaging import PreprocessConfig
from ml.leafgate import LeafGate
from ml.model import CassavaNet, ModelConfig
from schemas.errors import ModelError

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: CassavaNet | Ensemble
    classes: tuple[str, ...]
    preprocess: PreprocessConfig
    version: str
    meta: dict[str, Any] = field(default_factory=dict)
    tta_views: int = 1  # test-time augmentation: 1 (none), 2 (+ mirror) or 4 (+ flips both ways)
    leaf_gate: LeafGate | None = None  # turns away photos that are not cassava leaves; older models have none


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> str:
    """Write atomically (a worker loading it never sees half a file) and return the file's sha256."""
    payload = {
        "format": FORMAT_VERSION,
        "state_dict": checkpoint.model.state_dict(),
        "config": model_config(checkpoint.model),
        "classes": list(checkpoint.classes),
        "preprocessing": checkpoint.preprocess.to_dict(),
        "version": checkpoint.version,
        "inference": {"tta_views": checkpoint.tta_views},
        "leaf_gate": checkpoint.leaf_gate.to_dict() if checkpoint.leaf_gate else None,
        "meta": checkpoint.meta,
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return file_sha256(path)


def load_checkpoint(source: Path | bytes) -> Checkpoint:
    """Load for inference (eval mode) from a file or its bytes. Raises ModelError when it is missing or does not fit
    the code."""
    try:
        payload = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu",
                             weights_only=True)  # fmt: skip
        if payload.get("format") != FORMAT_VERSION:
            raise ModelError(f"{_name(source)}: checkpoint format {payload.get('format')!r}, expected {FORMAT_VERSION}")
        model = build_model(payload["config"])
        model.load_state_dict(payload["state_dict"])
        gate = LeafGate.from_dict(payload["leaf_gate"]) if payload.get("leaf_gate") else None
    except (OSError, KeyError, RuntimeError, TypeError, pickle.UnpicklingError) as exc:
        raise ModelError(f"cannot load model {_name(source)}: {exc}") from exc
    model.eval()
    return Checkpoint(
        model=model,
        classes=tuple(payload["classes"]),
        preprocess=PreprocessConfig(**payload["preprocessing"]),
        version=payload["version"],
        meta=payload.get("meta", {}),
        tta_views=payload.get("inference", {}).get("tta_views", 1),
        leaf_gate=gate,
    )


def model_config(model: CassavaNet | Ensemble) -> dict[str, Any]:
    """What rebuilds the network's layers: its ModelConfig, or an ensemble's list of them."""
    if isinstance(model, Ensemble):
        return {"members": [member.config.to_dict() for member in model.nets()]}
    return model.config.to_dict()


def build_model(config: dict[str, Any]) -> CassavaNet | Ensemble:
    if "members" in config:
        return Ensemble([CassavaNet(ModelConfig.from_dict(member)) for member in config["members"]])
    return CassavaNet(ModelConfig.from_dict(config))


def _name(source: Path | bytes) -> str:
    return str(source) if isinstance(source, Path) else f"({len(source)} bytes)"

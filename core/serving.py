"""The model the inference workers serve, in the runtime MHOGO_SERVING_RUNTIME names.

The default serves the champion's fp32 ONNX build under ONNX Runtime, which gave the same answer as eager PyTorch
on every unseen variant of the photos at well under its cost; the int8 build is faster again but answered
differently on more of them (bench/runtime.py has the table of every runtime tried; MHOGO_SERVING_RUNTIME chooses).
Either is the very build a phone runs offline (`mhogo export [--int8]`), made once per registered version and kept
in the blob store under the sha256 of the checkpoint it came from. Whoever needs it first makes it (`mhogo models
promote` and a retraining run that promotes, before the workers switch; or a worker loading a version that has none
yet), under a file lock so that processes sharing the blob store do not all make it at once. The committed baseline
ships with its builds beside it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from core import registry
from core.blobs import BlobStore
from ml.files import atomic_write, file_sha256
from ml.quality import QualityThresholds
from schemas.errors import ModelError
from schemas.tables import ModelVersion

if TYPE_CHECKING:
    import numpy as np

    from core.config import Settings
    from ml.checkpoint import Checkpoint
    from ml.export import Exported
    from ml.prediction import Classifier

log = logging.getLogger(__name__)

BUILD_NAMESPACES = {"onnx-int8": "int8", "onnx-fp32": "fp32", "phone": "phone"}
# The build the farmer's app downloads and runs offline (GET /v1/model; core.phone_model), whatever the workers serve:
# the phone graph (ml/phone_graph.py), a fifth of the served build's size.
PHONE_RUNTIME = "phone"


def build_key(sha256: str, runtime: str) -> str:
    """The blob key of a checkpoint's build for `runtime` (the .json describing it lies beside it)."""
    return BlobStore.key_for(BUILD_NAMESPACES[runtime], sha256, ".onnx")


def prebuilt_path(model_path: Path, runtime: str) -> Path:
    """Where a shipped checkpoint keeps its build: ml/weights/baseline.pt -> ml/weights/baseline.int8.onnx."""
    return model_path.with_suffix(f".{BUILD_NAMESPACES[runtime]}.onnx")


def calibration_pixels(folder: Path, checkpoint: Checkpoint, max_pixels: int) -> list[np.ndarray]:
    """Real photos (class folders), prepared as served: what int8 calibration sees."""
    from ml.data import scan
    from ml.imaging import decode, prepare
    from ml.phone_build import phone_input

    photos = scan(folder, checkpoint.classes)
    if not photos:
        raise ModelError(f"no photos to calibrate an int8 build on in {folder}")
    return [
        phone_input(prepare(decode(photo.path.read_bytes(), max_pixels), checkpoint.preprocess).image,
                    checkpoint.preprocess)
        for photo in photos
    ]  # fmt: skip


def make_build(
    checkpoint: Checkpoint,
    sha256: str,
    runtime: str,
    out: Path,
    limits: QualityThresholds,
    calibration: Path,
    max_pixels: int,
) -> Path:
    """Export `checkpoint` for `runtime` to `out` (and its .json), calibrated (int8) and, for the phone graph, its
    leaf gate fitted on the photos of `calibration`. The .onnx appears last, whole: its presence means the build is
    complete."""
    from ml.export import export_int8, export_onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        if runtime == "phone":
            built = make_phone_build(checkpoint, sha256, Path(tmp), limits, calibration, max_pixels)
        else:
            built = export_onnx(checkpoint, Path(tmp) / "model.onnx", limits, sha256)
        if runtime == "onnx-int8":
            pixels = calibration_pixels(calibration, checkpoint, max_pixels)
            built = export_int8(checkpoint, built.path, Path(tmp) / "model.int8.onnx", pixels, limits, sha256)
        os.replace(built.path.with_suffix(".json"), out.with_suffix(".json"))
        os.replace(built.path, out)
    return out


def make_phone_build(
    checkpoint: Checkpoint, sha256: str, folder: Path, limits: QualityThresholds, photos: Path, max_pixels: int
) -> Exported:
    """The phone graph (ml/phone_graph.py): its leaf gate fitted on the class folders of `photos` against its
    `negatives` folder, its int8 calibrated on the same cassava photos."""
    from ml.data import negatives_beside, scan
    from ml.phone_graph import GatePhotos, export_phone

    gate_photos = GatePhotos(scan(photos, checkpoint.classes), negatives_beside(photos))
    pixels = calibration_pixels(photos, checkpoint, max_pixels)
    return export_phone(checkpoint, gate_photos, folder, limits, pixels, sha256)


def is_shipped(prebuilt: Path | None, sha256: str) -> bool:
    """A build shipped beside the seed checkpoint, made from exactly this checkpoint."""
    if prebuilt is None or not prebuilt.is_file() or not prebuilt.with_suffix(".json").is_file():
        return False
    spec = json.loads(prebuilt.with_suffix(".json").read_text())
    return bool(spec.get("checkpoint_sha256") == sha256)


def copy_whole(source: Path, target: Path) -> None:
    """Copy to a temporary file beside `target`, flushed to disk, then renamed over it."""
    with source.open("rb") as original:
        atomic_write(target, lambda handle: shutil.copyfileobj(original, handle))


def is_whole(path: Path) -> bool:
    """A build in place and whole: the .onnx and its .json, the file's sha256 the one the .json gives."""
    if not path.is_file() or not path.with_suffix(".json").is_file():
        return False
    try:
        spec = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    return bool(spec.get("sha256") == file_sha256(path))


def ensure_build(
    blobs: BlobStore,
    row: ModelVersion,
    runtime: str,
    limits: QualityThresholds,
    calibration: Path,
    max_pixels: int,
    prebuilt: Path | None = None,
) -> Path:
    """The path of the version's build for `runtime`, made now if nobody made it yet. A build is written beside its
    place and renamed into it, .json first and .onnx last, so a reader finds it whole or not at all; one found
    damaged (cut short by a crash, or by a copier before this rule) is made again."""
    path = blobs.path(build_key(row.sha256, runtime))
    if is_whole(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if is_whole(path):  # another process made it while this one waited
            return path
        if path.exists():
            log.warning("the %s build of model %s is damaged: making it again", runtime, row.version)
        if is_shipped(prebuilt, row.sha256):
            assert prebuilt is not None
            for source, target in ((prebuilt.with_suffix(".json"), path.with_suffix(".json")), (prebuilt, path)):
                copy_whole(source, target)
            return path
        log.warning("making the %s build of model %s (once per version)", runtime, row.version)
        return make_build(registry.load(blobs, row), row.sha256, runtime, path, limits, calibration, max_pixels)


def prepare_for_serving(config: Settings, blobs: BlobStore, row: ModelVersion) -> None:
    """Make the version's build for the configured runtime now (before it is promoted), so that the workers
    switching to it load it at once instead of making it between two photos."""
    if config.SERVING_RUNTIME != "torch":
        ensure_build(blobs, row, config.SERVING_RUNTIME, config.quality_thresholds, config.calibration_dir,
                     config.MAX_IMAGE_PIXELS, prebuilt_path(config.model_path, config.SERVING_RUNTIME))  # fmt: skip


def phone_build_at_hand(config: Settings, blobs: BlobStore, row: ModelVersion) -> bool:
    """Whether the version's phone build is made already, or shipped beside the seed model (a copy away)."""
    return is_whole(blobs.path(build_key(row.sha256, PHONE_RUNTIME))) or is_shipped(
        prebuilt_path(config.model_path, PHONE_RUNTIME), row.sha256
    )


def ensure_phone_build(config: Settings, blobs: BlobStore, row: ModelVersion) -> Path:
    """The version's build for the phone (PHONE_RUNTIME), made now if nobody made it yet: its leaf gate fitted on
    the photos retraining learns from (MHOGO_TRAIN_DATA_DIR: class folders and `negatives`), else on the calibration
    photos (samples/ by default: fewer, so a weaker gate)."""
    photos = config.TRAIN_DATA_DIR or config.calibration_dir
    return ensure_build(blobs, row, PHONE_RUNTIME, config.quality_thresholds, photos,
                        config.MAX_IMAGE_PIXELS, prebuilt_path(config.model_path, PHONE_RUNTIME))  # fmt: skip


def load_classifier(
    blobs: BlobStore,
    row: ModelVersion,
    runtime: str,
    threads: int,
    limits: QualityThresholds,
    calibration: Path,
    max_pixels: int,
    prebuilt_model: Path | None = None,
) -> Classifier:
    """The registered version, ready to serve in `runtime` with `threads` math threads."""
    if runtime == "torch":
        import torch

        from ml.predictor import Predictor

        torch.set_num_threads(threads)
        return Predictor(registry.load(blobs, row))
    from ml.phone_build import PhoneBuild

    prebuilt = None if prebuilt_model is None else prebuilt_path(prebuilt_model, runtime)
    path = ensure_build(blobs, row, runtime, limits, calibration, max_pixels, prebuilt)
    build = PhoneBuild(path, threads)
    if build.version != row.version:
        raise ModelError(f"the build at {path} is of {build.version}, not {row.version}")
    return build

"""The phone graph against the served model, measured in one run: size, time per photo, and how often the phone's
provisional answer is the server's.

    .venv/bin/python bench/phone_graph.py ../shared/data [--model ml/weights/baseline.pt] [--out ml/weights]

Agreement is honest: the photos are split in two halves (near-duplicates together, ml/splits.py), each half is
answered by a phone graph whose leaf gate was fitted on the other half, and both answers go through the same
`examine` (quality gate, model, leaf gate) on the same bytes. "Same answer" means the same label, or both turning
the photo away. Times are the median of single-photo calls (a phone diagnoses one leaf) on one thread, ONNX Runtime
on this CPU; the browser's WASM is measured by the farmer's app's browser test. With --out, the phone graph fitted
on every photo is written there as baseline.phone.onnx (+ .json): the build shipped beside the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from core.config import settings
from core.serving import calibration_pixels, prebuilt_path
from ml.checkpoint import load_checkpoint
from ml.data import Sample, negatives_beside, scan
from ml.files import file_sha256
from ml.imaging import MAX_LOCAL_PIXELS
from ml.phone_build import PhoneBuild
from ml.phone_graph import GatePhotos, export_phone
from ml.splits import group_folds, near_duplicate_groups, perceptual_hashes
from schemas.findings import Finding


def answer(finding: Finding) -> str:
    return finding.label if finding.label is not None else "rejected"


def timed(build: PhoneBuild, data: bytes) -> tuple[Finding, float]:
    start = time.perf_counter()
    finding = build.examine(data)
    return finding, (time.perf_counter() - start) * 1000


def compare(served: PhoneBuild, phone: PhoneBuild, photos: Sequence[Sample]) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"cassava": [], "others": [], "phone_ms": [], "served_ms": []}
    for photo in photos:
        data = photo.path.read_bytes()
        for build in (served, phone):  # warm: the first call of a session is slower
            build.examine(data)
        expected, served_ms = timed(served, data)
        got, phone_ms = timed(phone, data)
        figures["cassava" if photo.label >= 0 else "others"].append(float(answer(got) == answer(expected)))
        figures["served_ms"].append(served_ms)
        figures["phone_ms"].append(phone_ms)
    return figures


def halved(photos: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Two halves, stratified by class, near-duplicates of a photo in its half."""
    folds = group_folds(photos, near_duplicate_groups(perceptual_hashes(photos)), 2, seed=42)
    return (
        [p for p, f in zip(photos, folds, strict=True) if f == 0],
        [p for p, f in zip(photos, folds, strict=True) if f == 1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--model", type=Path, default=settings.model_path)
    parser.add_argument("--out", type=Path, default=None, help="write baseline.phone.onnx (+ .json) here")
    args = parser.parse_args()
    champion = load_checkpoint(args.model)
    sha = file_sha256(args.model)
    served = PhoneBuild(prebuilt_path(args.model, "onnx-fp32"), threads=1)
    leaves, others = scan(args.data_dir, champion.classes), negatives_beside(args.data_dir)
    calibration = calibration_pixels(settings.calibration_dir, champion, MAX_LOCAL_PIXELS)
    limits = settings.quality_thresholds
    print(f"{champion.version}: {len(leaves)} cassava photos, {len(others)} others; served build {served.precision}")
    halves = [halved(photos) for photos in (leaves, others)]
    totals: dict[str, list[float]] = {"cassava": [], "others": [], "phone_ms": [], "served_ms": []}
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        for half in range(2):
            fit = GatePhotos(*(parts[1 - half] for parts in halves))
            held = [*halves[0][half], *halves[1][half]]
            folder = Path(tmp) / f"half{half}"
            built = export_phone(champion, fit, folder, limits, calibration, sha)
            size = built.size_bytes
            figures = compare(served, PhoneBuild(built.path, threads=1), held)
            for key, values in figures.items():
                totals[key] += values
            print(f"half {half + 1}: gate fitted on {len(fit.leaves)} + {len(fit.others)}, answered {len(held)}: "
                  f"same answer {statistics.mean(figures['cassava'] + figures['others']):.3f}")  # fmt: skip
        if args.out is not None:
            built = export_phone(champion, GatePhotos(leaves, others), Path(tmp) / "all", limits, calibration, sha)
            target = prebuilt_path(args.out / args.model.name, "phone")
            shutil.copyfile(built.path.with_suffix(".json"), target.with_suffix(".json"))
            shutil.copyfile(built.path, target)
            print(f"wrote {target} ({built.size_bytes / 1e6:.1f} MB)")
    both = totals["cassava"] + totals["others"]
    served_size = prebuilt_path(args.model, "onnx-fp32").stat().st_size
    phone_ms, served_ms = statistics.median(totals["phone_ms"]), statistics.median(totals["served_ms"])
    print(
        f"phone graph int8: {size / 1e6:.1f} MB ({size / served_size:.2f} of the served fp32 build's "
        f"{served_size / 1e6:.1f} MB)"
    )
    print(
        f"time per photo, one thread: phone {phone_ms:.1f} ms, served {served_ms:.1f} ms (ratio "
        f"{phone_ms / served_ms:.2f})"
    )
    print(
        f"same answer as the server: {statistics.mean(both):.3f} of {len(both)} photos; cassava "
        f"{statistics.mean(totals['cassava']):.3f} of {len(totals['cassava'])}, others "
        f"{statistics.mean(totals['others']):.3f} of {len(totals['others'])}"
    )


if __name__ == "__main__":
    main()

"""Training choices measured by five-fold cross-validation on the cassava photos, one variant at a time.

    .venv/bin/python bench/experiments.py ../shared/data/cassava --out bench/results/experiments.jsonl [VARIANT...]

Each variant changes a few fields of TrainConfig from the default; every run uses the same folds (same seed, whole
near-duplicate groups per fold). Appends one JSON line per variant to --out and prints a markdown table of all
lines there, so a long series can be run in several sittings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from core.config import settings
from ml.augment import AugmentConfig
from ml.imaging import PreprocessConfig
from ml.model import ModelConfig
from ml.train import TrainConfig, cross_validate

NO_AUGMENT = AugmentConfig(
    crop_size=256, crop_scale=(1.0, 1.0), flip=False, brightness=0, contrast=0, saturation=0, blur_probability=0
)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "epochs-15": {"epochs": 15},
    "epochs-45": {"epochs": 45},
    "lr-1e-3": {"lr": 1e-3},
    "no-label-smoothing": {"label_smoothing": 0.0},
    "no-augmentation": {"augment": NO_AUGMENT},
    "freeze-8": {"freeze_blocks": 8},
    "freeze-12": {"freeze_blocks": 12},
    "freeze-14": {"freeze_blocks": 14},
    "dropout-0.5": {"model": ModelConfig(dropout=0.5)},
    "lite1-single": {"model": ModelConfig.for_backbone("lite1"), "soup": 1},
    "lite2-single": {"model": ModelConfig.for_backbone("lite2"), "soup": 1},
    "lite1": {"model": ModelConfig.for_backbone("lite1")},
    "freeze-0": {"freeze_blocks": 0},
    "served-at-224": {"preprocess": PreprocessConfig(input_size=224)},
    "train-and-serve-288": {"augment": AugmentConfig(crop_size=288), "preprocess": PreprocessConfig(input_size=288)},
    "head-only": {"freeze_blocks": 16},
    "single-model": {"soup": 1},
    "no-bn-recalibration": {"recalibrate_bn": False},
    "wd-0.05": {"weight_decay": 0.05},
}


def run(data_dir: Path, name: str, folds: int) -> dict[str, Any]:
    config = dataclasses.replace(TrainConfig(threads=settings.torch_threads), **VARIANTS[name])
    report = cross_validate(data_dir, config, settings.quality_thresholds, folds)
    row: dict[str, Any] = {"variant": name, "changes": {k: str(v) for k, v in VARIANTS[name].items()},
                           "seconds": report["seconds"]}  # fmt: skip
    for views in (1, 2, 4):
        cv = report[f"tta_{views}"]
        row[f"tta_{views}"] = {
            "accuracy": cv["mean_accuracy"],
            "macro_f1": cv["mean_macro_f1"],
            "ece": cv["pooled"]["expected_calibration_error"],
            "confusion": cv["pooled"]["confusion_matrix"]["counts"],
            "mistakes": [m["photo"] for m in cv["mistakes"]],
        }
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | accuracy | macro-F1 | ECE | + mirror TTA: acc / F1 | + 4 flips: acc / F1 | minutes |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        a, b, c = r["tta_1"], r["tta_2"], r["tta_4"]
        lines.append(f"| {r['variant']} | {a['accuracy']:.3f} | {a['macro_f1']:.3f} | {a['ece']:.3f} | "
                     f"{b['accuracy']:.3f} / {b['macro_f1']:.3f} | {c['accuracy']:.3f} / {c['macro_f1']:.3f} | "
                     f"{r['seconds'] / 60:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("variants", nargs="*", help=f"default: all of {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=Path("bench/results/experiments.jsonl"))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_intermixed_args()
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    args.variants = args.variants or list(VARIANTS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        row = run(args.data_dir, name, args.folds)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"{name}: {json.dumps({k: row[k] for k in ('tta_1', 'tta_2')})[:300]}", flush=True)
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    print(table(rows))


if __name__ == "__main__":
    main()

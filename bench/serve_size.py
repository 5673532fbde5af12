"""Paired test of the served input size: the same five fold models, each measured at several input sizes.

    .venv/bin/python bench/serve_size.py ../shared/data/cassava [--sizes 224 256 288 320] [--soup 1] [--seed 42]

The models learn from random 224 px crops, which zoom in on the leaf; served as a centre square of the whole
photo, the leaf looks smaller than in training unless the square is served larger (Touvron et al., "Fixing the
train-test resolution discrepancy", 2019). Because every size is measured on the same models, the differences are
not blurred by the seed-to-seed spread of training (about +-0.05 here). Prints a table, per fold and mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from tqdm import tqdm

from core.config import settings
from ml.checkpoint import Checkpoint
from ml.evaluate import cassava_metrics, run_photos
from ml.predictor import Predictor
from ml.train import CLASSES, TrainConfig, fit, fold_splits, load_dataset, steps_per_fit

VIEWS = (1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288, 320])
    parser.add_argument("--soup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    config = TrainConfig(threads=settings.torch_threads, soup=args.soup, seed=args.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_dataset(args.data_dir)
    splits = fold_splits(data, args.folds, config.seed)
    accuracy: dict[tuple[int, int], list[float]] = {(size, v): [] for size in args.sizes for v in VIEWS}
    macro_f1: dict[tuple[int, int], list[float]] = {key: [] for key in accuracy}
    total = sum(steps_per_fit(len(train_set), config) for train_set, _ in splits)
    with tqdm(total=total, desc="fold models", unit="batch", dynamic_ncols=True) as bar:
        for k, (train_set, held_out) in enumerate(splits):
            model, _ = fit(train_set, config, bar)
            for size, views in accuracy:
                preprocess = dataclasses.replace(config.preprocess, input_size=size)
                checkpoint = Checkpoint(model, tuple(CLASSES), preprocess, f"fold-{k}", tta_views=views)
                metrics = cassava_metrics(
                    run_photos(Predictor(checkpoint), held_out, settings.quality_thresholds, progress=False), CLASSES
                )
                accuracy[size, views].append(metrics["accuracy"])
                macro_f1[size, views].append(metrics["macro_f1"])
    print("| served at | test-time views | accuracy per fold | mean accuracy | mean macro-F1 |")
    print("|---|---|---|---|---|")
    for size, views in accuracy:
        folds = " ".join(f"{a:.3f}" for a in accuracy[size, views])
        mean_acc = sum(accuracy[size, views]) / args.folds
        mean_f1 = sum(macro_f1[size, views]) / args.folds
        print(f"| {size} px | {views} | {folds} | {mean_acc:.3f} | {mean_f1:.3f} |")
    print(json.dumps({f"{size}/{views}": accuracy[size, views] for size, views in accuracy}))


if __name__ == "__main__":
    main()

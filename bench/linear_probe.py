"""How good are each backbone's frozen ImageNet features for cassava? A linear probe on the same five folds.

    .venv/bin/python bench/linear_probe.py ../shared/data/cassava [--backbones lite0 lite1 lite2] [--sizes 224 256]

For each backbone and served size: pooled features of every photo and its mirror image (averaged), then a
class-balanced, L2-regularised logistic regression per fold, trained on the other folds. Deterministic (no seed
spread), fast (no fine-tuning), so it ranks backbones cheaply before their fine-tuning is cross-validated.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from ml.imaging import decode, prepare
from ml.linear import fit_logistic
from ml.metrics import summarize
from ml.model import BACKBONES, CassavaNet, ModelConfig, load_imagenet_backbone
from ml.splits import group_folds
from ml.tensors import model_input
from ml.train import CLASSES, TrainConfig, load_dataset


def probe(features: torch.Tensor, labels: torch.Tensor, folds: list[int], l2: float = 1e-2) -> tuple[float, float]:
    """Mean accuracy and macro-F1 over the folds of a logistic regression on standardised features."""
    accuracy, f1 = [], []
    k = max(folds) + 1
    for fold in range(k):
        train = torch.tensor([f != fold for f in folds])
        x = (features - features[train].mean(0)) / (features[train].std(0) + 1e-6)
        head = fit_logistic(x[train], labels[train], len(CLASSES), l2)
        with torch.no_grad():
            predicted = head(x[~train]).argmax(1)
        figures = summarize(labels[~train], predicted, CLASSES)
        accuracy.append(figures["accuracy"])
        f1.append(figures["macro_f1"])
    return sum(accuracy) / k, sum(f1) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288])
    args = parser.parse_args()
    config = TrainConfig()
    data = load_dataset(args.data_dir)
    folds = group_folds(data.samples, data.groups, 5, config.seed)
    labels = torch.tensor([s.label for s in data.samples])
    prepared = [prepare(decode(s.path.read_bytes(), 10**8), config.preprocess).image for s in data.samples]
    print("| backbone | served at | accuracy | macro-F1 |\n|---|---|---|---|")
    for name in args.backbones:
        model = CassavaNet(ModelConfig.for_backbone(name))
        load_imagenet_backbone(model)
        model.eval()
        for size in args.sizes:
            preprocess = dataclasses.replace(config.preprocess, input_size=size)
            with torch.inference_mode():
                batch = torch.stack([model_input(image, preprocess) for image in tqdm(prepared, leave=False)])
                features = (model.features(batch) + model.features(batch.flip(3))) / 2
            accuracy, f1 = probe(features, labels, folds)
            print(f"| {name} | {size} px | {accuracy:.3f} | {f1:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""How should the leaf gate's threshold be chosen? Every rule measured on the same cross-validation folds.

    .venv/bin/python bench/gate_study.py FOLDS_DIR [FOLDS_DIR ...] [--data ../shared/data] [--out FILE.json]

FOLDS_DIR holds the fold models of `mhogo train --cv K --keep-folds FOLDS_DIR`. Given several (the same folds,
other backbones), fold K's model is the ensemble of every folder's fold K (ml/ensemble.py), with a gate fitted
on its joined embedding. For each fold this script recomputes what a rule may look at (the out-of-fold gate scores
of the fold's training photos, as `ml.gatefit.fit_gate` does) and runs the fold's held-out photos, cassava and not,
through the serving path once with the leaf gate open, keeping each photo's diagnosis, quality verdict and leaf
score. A rule then picks a threshold per fold from the training side only, and the held-out figures follow exactly
as the cross-validation computes them: accuracy and macro-F1 with rejected photos counted wrong, cassava photos
turned away, negatives turned away. The gate's weights are the same for every rule; only the threshold moves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from tqdm import tqdm

from core.config import settings
from ml.checkpoint import Checkpoint, load_checkpoint
from ml.ensemble import Ensemble
from ml.evaluate import Outcome, cassava_metrics, gate_figures, run_photos
from ml.gatefit import OutOfFold, gate_data, gate_from, out_of_fold, threshold_at
from ml.model import CassavaNet
from ml.predictor import Predictor
from ml.train import CLASSES, Dataset, TrainConfig, fold_splits, load_dataset
from schemas.reasons import RejectReason

Rule = Callable[[OutOfFold], float]


def cassava_quantile(target: float, views: str = "served") -> Rule:
    """The score below which `target` of the training cassava photos fall (out of fold): the rule in use."""

    def rule(oof: OutOfFold) -> float:
        rows = oof.is_leaf & oof.served if views == "served" else oof.is_leaf
        return threshold_at(oof.score[rows], target)

    return rule


def negatives_quantile(rejected: float) -> Rule:
    """The score below which `rejected` of the training negatives fall (out of fold)."""

    def rule(oof: OutOfFold) -> float:
        ordered = oof.score[~oof.is_leaf & oof.served].sort().values
        return float(ordered[min(math.ceil(rejected * len(ordered)), len(ordered) - 1)])

    return rule


def logit_normal(target: float) -> Rule:
    """A normal fitted to the logits of the training cassava scores (out of fold, served views), cut at its
    `target` quantile: uses every photo's score, not two order statistics."""

    def rule(oof: OutOfFold) -> float:
        logits = torch.logit(oof.score[oof.is_leaf & oof.served].clamp(1e-6, 1 - 1e-6))
        z = statistics.NormalDist().inv_cdf(target)
        return float(torch.sigmoid(logits.mean() + z * logits.std()))

    return rule


def weighted_errors(cost: float) -> Rule:
    """The threshold minimising cost x (cassava turned away) + (negatives let through), as rates, out of fold."""

    def rule(oof: OutOfFold) -> float:
        leaf = oof.score[oof.is_leaf & oof.served]
        other = oof.score[~oof.is_leaf & oof.served]
        candidates = torch.cat([leaf, other]).sort().values
        errors = [cost * float((leaf < t).float().mean()) + float((other >= t).float().mean()) for t in candidates]
        return float(candidates[min(range(len(errors)), key=errors.__getitem__)])

    return rule


RULES: dict[str, Rule] = {
    "cassava 3% (in use)": cassava_quantile(0.03),
    "cassava 2%": cassava_quantile(0.02),
    "cassava 5%": cassava_quantile(0.05),
    "cassava 3%, all views": cassava_quantile(0.03, views="all"),
    "cassava 5%, all views": cassava_quantile(0.05, views="all"),
    "logit-normal 2%": logit_normal(0.02),
    "logit-normal 3%": logit_normal(0.03),
    "negatives 95%": negatives_quantile(0.95),
    "negatives 97%": negatives_quantile(0.97),
    "errors, cassava x1": weighted_errors(1.0),
    "errors, cassava x2": weighted_errors(2.0),
    "errors, cassava x3": weighted_errors(3.0),
    "fixed 0.5": lambda oof: 0.5,
    "no leaf gate": lambda oof: -1.0,
}


@dataclasses.dataclass
class Fold:
    oof: OutOfFold
    cassava: list[Outcome]  # held out, leaf gate open
    negatives: list[Outcome]


def measure_fold(paths: list[Path], data: Dataset) -> Fold:
    members = [load_checkpoint(path) for path in paths]
    checkpoint = members[0]
    config = TrainConfig.from_dict(checkpoint.meta["params"])
    fold, folds = checkpoint.meta["fold"], checkpoint.meta["folds"]
    if len(members) > 1:
        assert all(m.meta["fold"] == fold and m.preprocess == checkpoint.preprocess for m in members), paths
        model = Ensemble([cast(CassavaNet, m.model) for m in members])
        version = "+".join(m.version for m in members)
        checkpoint = Checkpoint(
            model, checkpoint.classes, checkpoint.preprocess, version, tta_views=checkpoint.tta_views
        )
    train_set, held_out = fold_splits(data, folds, config.seed)[fold]
    train_others, held_out_others = fold_splits(data, folds, config.seed, negatives=True)[fold]
    views, seed = config.gate.augmented_views, config.gate.seed
    leaves = gate_data(checkpoint, train_set, config.augment, views, seed, progress=True)
    others = gate_data(checkpoint, train_others, config.augment, views, seed, progress=True)
    oof = out_of_fold(leaves, others, config.gate)
    gate = checkpoint.leaf_gate = gate_from(oof, config.gate)  # as the fold's own: same photos, same code
    gate.threshold = -1.0  # open: keep every photo's diagnosis and score; the rules close it afterwards
    predictor = Predictor(checkpoint)
    limits = settings.quality_thresholds
    return Fold(oof, run_photos(predictor, held_out, limits), run_photos(predictor, held_out_others, limits))


def close(outcomes: list[Outcome], threshold: float) -> list[Outcome]:
    """The outcomes as a gate with this threshold would have served them."""
    return [dataclasses.replace(o, predicted=-1, reason=RejectReason.NOT_CASSAVA_LEAF, probabilities=None)
            if o.reason is None and o.leaf is not None and o.leaf < threshold else o
            for o in outcomes]  # fmt: skip


def apply(rule: Rule, folds: list[Fold]) -> dict[str, Any]:
    per_fold, pooled = [], []
    for fold in folds:
        threshold = rule(fold.oof)
        served = close(fold.cassava, threshold)
        pooled += served
        metrics = cassava_metrics(served, CLASSES)
        figures = gate_figures(metrics, close(fold.negatives, threshold))
        per_fold.append({"threshold": round(threshold, 4), "accuracy": metrics["accuracy"],
                         "macro_f1": metrics["macro_f1"], "ece": metrics["expected_calibration_error"],
                         "photos": metrics["photos"], "rejected": metrics["rejected"], **figures})  # fmt: skip
    mean = {key: round(sum(f[key] for f in per_fold) / len(per_fold), 4)
            for key in ("accuracy", "macro_f1", "false_rejection_rate", "negative_rejection_rate")}  # fmt: skip
    everything = cassava_metrics(pooled, CLASSES)
    return {
        "mean": mean,
        "per_fold": per_fold,
        "pooled": {
            key: everything[key]
            for key in ("accuracy", "macro_f1", "confusion_matrix", "expected_calibration_error", "photos", "rejected")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folds_dirs", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=None, help="Also write every figure here as JSON.")
    args = parser.parse_args()
    torch.set_num_threads(settings.torch_threads or 2)
    names = sorted(path.name for path in args.folds_dirs[0].glob("fold-*.pt"))
    if not names:
        sys.exit(f"no fold-*.pt in {args.folds_dirs[0]}: run mhogo train --cv K --keep-folds DIR")
    cache = args.folds_dirs[-1] / ("measured-" + "+".join(d.parent.name for d in args.folds_dirs) + ".pt")
    if cache.exists():  # the slow part, kept: re-reading the rules costs nothing
        folds = torch.load(cache, weights_only=False)
    else:
        data = load_dataset(args.data)
        folds = [measure_fold([d / n for d in args.folds_dirs], data) for n in tqdm(names, desc="folds", unit="fold")]
        torch.save(folds, cache)
    results = {name: apply(rule, folds) for name, rule in RULES.items()}
    print(f"{'rule':24} {'accuracy':>8} {'macro-F1':>8} {'cassava rej':>11} {'negatives rej':>13}  thresholds")
    for name, result in results.items():
        m = result["mean"]
        thresholds = " ".join(f"{f['threshold']:.2f}" for f in result["per_fold"])
        print(f"{name:24} {m['accuracy']:8.3f} {m['macro_f1']:8.3f} {m['false_rejection_rate']:11.3f} "
              f"{m['negative_rejection_rate']:13.3f}  {thresholds}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"folds_dirs": [str(d) for d in args.folds_dirs], "rules": results}, indent=1))


if __name__ == "__main__":
    main()

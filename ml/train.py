"""Fine-tune EfficientNet-Lite0 on class folders of cassava photos, on the CPU.

    mhogo train ../shared/data/cassava --out model.pt             # one model: train / validation / test split
    mhogo train ../shared/data/cassava --cv 5                     # five-fold cross-validation by near-duplicate group
    mhogo train ../shared/data/cassava --out /tmp/m.pt --dry-run  # two small batches, as CI runs it

Reads like pytorch/examples mnist/main.py: a config, a train epoch, an evaluation, and a loop. The schedule is
fixed (warm-up, then cosine to zero) and the last epoch is the model: on a validation set of a dozen photos,
picking an epoch would fit the noise. Validation and test photos go through the serving path (quality gate
included), so the figures are the ones a farmer would see.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from ml.augment import AugmentConfig
from ml.checkpoint import Checkpoint, save_checkpoint
from ml.data import (
    PhotoDataset,
    Sample,
    class_counts,
    dataset_version,
    declared_version,
    negatives_beside,
    scan,
    scan_negatives,
)
from ml.drift import reference
from ml.ensemble import Ensemble
from ml.evaluate import cassava_metrics, gate_figures, run_photos
from ml.gatefit import GateConfig, attach_gate, compare_inputs, fit_gate, gate_data
from ml.imaging import MAX_LOCAL_PIXELS, PreprocessConfig, decode, prepare
from ml.leafgate import LeafGate
from ml.model import CassavaNet, ModelConfig, load_imagenet_backbone
from ml.predictor import Predictor
from ml.quality import QualityThresholds
from ml.splits import group_folds, near_duplicate_groups, perceptual_hashes, train_val_test
from schemas.labels import LABELS

log = logging.getLogger(__name__)
T = TypeVar("T")
CLASSES = [label.value for label in LABELS]


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3  # head; the backbone gets lr * backbone_lr_scale
    backbone_lr_scale: float = 0.3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    warmup_epochs: int = 1
    freeze_blocks: int = 4  # the stem and this many first blocks keep their ImageNet weights (and run 2.5x faster)
    recalibrate_bn: bool = True  # re-estimate batch-norm statistics for the final weights on the training photos
    soup: int = 3  # train this many models (seeds seed, seed + 1, ...) and average their weights into one
    channels_last: bool = True  # 1.8x faster convolutions on the CPU
    tta_views: int = 2  # test-time augmentation stored in the checkpoint: 1, 2 (mirror) or 4 (flips)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    threads: int = 0
    dry_run: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    gate: GateConfig = field(default_factory=GateConfig)  # the leaf gate, fitted when negatives are given
    ensemble: tuple[str, ...] = ()  # two backbones or more: each is trained (as `model` with that backbone, soup and
    # all) on the same photos, and they serve as one (ml/ensemble.py); empty: `model` alone

    def members(self) -> list[ModelConfig]:
        """The networks this recipe trains: `model`, or `model` once per backbone of the ensemble."""
        return [dataclasses.replace(self.model, stages=ModelConfig.for_backbone(b).stages, backbone=b)
                for b in self.ensemble] or [self.model]  # fmt: skip

    @property
    def name(self) -> str:
        """lite1, or lite1+lite2 for an ensemble: the start of a trained model's version."""
        return "+".join(member.backbone for member in self.members())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """The recipe of an earlier run (a checkpoint's `params`), so a retraining repeats it on new data. Keys this
        code does not know are dropped; missing ones take today's defaults."""
        config = _from_fields(cls, raw)
        return dataclasses.replace(
            config,
            model=ModelConfig.from_dict(raw["model"]) if "model" in raw else ModelConfig(),
            preprocess=_from_fields(PreprocessConfig, raw.get("preprocess", {})),
            augment=_from_fields(AugmentConfig, raw.get("augment", {})),
            gate=_from_fields(GateConfig, raw.get("gate", {})),
            ensemble=tuple(raw.get("ensemble", ())),
        )


def _from_fields(cls: type[T], raw: dict[str, Any]) -> T:
    """A flat dataclass from a JSON-like dict: unknown keys dropped, nested ones left to the caller, lists made
    tuples where the field holds a tuple."""
    defaults = cls()
    values = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.name not in raw or dataclasses.is_dataclass(getattr(defaults, item.name)):
            continue
        value = raw[item.name]
        values[item.name] = tuple(value) if isinstance(getattr(defaults, item.name), tuple) else value
    return cls(**values)


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    sha256: str
    path: Path


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def balanced_sampler(samples: Sequence[Sample], num_classes: int, generator: torch.Generator) -> WeightedRandomSampler:
    """Draw each class equally often: CMD and healthy would otherwise drown CBSD and CGM."""
    counts = class_counts(samples, num_classes)
    weights = [1.0 / counts[s.label] for s in samples]
    return WeightedRandomSampler(weights, num_samples=len(samples), replacement=True, generator=generator)


def frozen_modules(model: CassavaNet, blocks: int) -> list[nn.Module]:
    return [model._conv_stem, model._bn0, *model._blocks[:blocks]]


def freeze(model: CassavaNet, blocks: int) -> None:
    for module in frozen_modules(model, blocks):
        module.requires_grad_(False)


def train_mode(model: CassavaNet, frozen_blocks: int) -> None:
    """Training mode, except that frozen layers keep their ImageNet batch-norm statistics."""
    model.train()
    for module in frozen_modules(model, frozen_blocks):
        module.eval()


def make_optimizer(model: CassavaNet, config: TrainConfig) -> torch.optim.Optimizer:
    head = list(model._fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    return torch.optim.AdamW(
        [{"params": backbone, "lr": config.lr * config.backbone_lr_scale}, {"params": head, "lr": config.lr}],
        weight_decay=config.weight_decay,
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(
    model: CassavaNet,
    loader: DataLoader[tuple[torch.Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    config: TrainConfig,
    bar: tqdm,
) -> float:
    train_mode(model, config.freeze_blocks)
    total, seen = 0.0, 0
    for step, (images, labels) in enumerate(loader):
        if config.dry_run and step >= 2:
            break
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)  # images: (B, 3, S, S)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(labels)
        seen += len(labels)
        bar.update(1)
        bar.set_postfix(loss=f"{total / seen:.3f}")
    return total / max(seen, 1)


def fit_one(
    train_set: Sequence[Sample], config: TrainConfig, bar: tqdm, val_set: Sequence[Sample] = ()
) -> tuple[CassavaNet, list[dict[str, Any]]]:
    """Train a fresh model from the ImageNet weights on `train_set` for the whole schedule."""
    generator = seed_everything(config.seed)
    model = CassavaNet(config.model)
    load_imagenet_backbone(model)
    freeze(model, config.freeze_blocks)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = PhotoDataset(train_set, config.preprocess, config.augment, seed=config.seed)
    batch_size = 4 if config.dry_run else config.batch_size
    sampler = balanced_sampler(train_set, len(CLASSES), generator)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=len(train_set) > batch_size)
    epochs = 1 if config.dry_run else config.epochs
    steps = min(len(loader), 2) if config.dry_run else len(loader)
    optimizer = make_optimizer(model, config)
    scheduler = warmup_cosine(optimizer, config.warmup_epochs * steps, epochs * steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        loss = train_epoch(model, loader, optimizer, scheduler, loss_fn, config, bar)
        history.append({"epoch": epoch + 1, "train_loss": round(loss, 4), **validation(model, val_set, config)})
    return model, history


def average_weights(models: Sequence[CassavaNet]) -> CassavaNet:
    """A "model soup": the mean of the weights of models fine-tuned from the same ImageNet start."""
    soup = copy.deepcopy(models[0])
    states = [model.state_dict() for model in models]
    soup.load_state_dict({
        key: sum(state[key] for state in states) / len(states) if value.is_floating_point() else value
        for key, value in states[0].items()
    })  # fmt: skip
    return soup


def fit_recipe(
    train_set: Sequence[Sample], config: TrainConfig, bar: tqdm, val_set: Sequence[Sample] = ()
) -> tuple[CassavaNet | Ensemble, list[dict[str, Any]]]:
    """The recipe's model: one network (see `fit`), or each member of its ensemble fitted in turn and joined."""
    members = config.members()
    if len(members) == 1:
        return fit(train_set, config, bar, val_set)
    fitted = [
        fit(train_set, dataclasses.replace(config, model=member, ensemble=()), bar, val_set) for member in members
    ]
    history = [{"member": member.backbone, **row} for member, (_, rows) in zip(members, fitted, strict=True)
               for row in rows]  # fmt: skip
    return Ensemble([model for model, _ in fitted]).eval(), history


def fit(
    train_set: Sequence[Sample], config: TrainConfig, bar: tqdm, val_set: Sequence[Sample] = ()
) -> tuple[CassavaNet, list[dict[str, Any]]]:
    """Train `config.soup` models with consecutive seeds, average them, and re-estimate the batch-norm statistics
    of the result; with `val_set`, the history also follows validation loss and accuracy per epoch."""
    runs = [fit_one(train_set, dataclasses.replace(config, seed=config.seed + i), bar, val_set)
            for i in range(config.soup)]  # fmt: skip
    model = average_weights([model for model, _ in runs]) if len(runs) > 1 else runs[0][0]
    if config.recalibrate_bn or len(runs) > 1:  # averaged weights need statistics of their own
        recalibrate_batch_norm(model, train_set, config)
    history = [{"run": i + 1, **row} for i, (_, rows) in enumerate(runs) for row in rows]
    return model.eval(), history


@torch.no_grad()
def validation(model: CassavaNet, val_set: Sequence[Sample], config: TrainConfig) -> dict[str, float]:
    """Loss and accuracy on the validation photos (centre input, no test-time views): to watch, not to select."""
    if not val_set:
        return {}
    model.eval()
    images, labels = next(iter(DataLoader(PhotoDataset(val_set, config.preprocess), batch_size=len(val_set))))
    logits = model(images)
    return {
        "val_loss": round(float(nn.functional.cross_entropy(logits, labels)), 4),
        "val_accuracy": round(float((logits.argmax(dim=-1) == labels).float().mean()), 4),
    }


@torch.no_grad()
def recalibrate_batch_norm(model: CassavaNet, train_set: Sequence[Sample], config: TrainConfig) -> None:
    """The running statistics of the fine-tuned batch-norm layers average over the whole trajectory (momentum
    0.01); estimate them again, for the final weights only, from the training photos as served."""
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight.requires_grad]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a plain average over every batch below
    train_mode(model, config.freeze_blocks)
    loader = DataLoader(PhotoDataset(train_set, config.preprocess), batch_size=config.batch_size)
    for images, _ in loader:
        model(images.contiguous(memory_format=torch.channels_last) if config.channels_last else images)
    for layer in layers:
        layer.momentum = 0.01
    model.eval()


def steps_per_fit(n_train: int, config: TrainConfig) -> int:
    if config.dry_run:
        return min(2, max(1, n_train // 4)) * config.soup * len(config.members())
    batches = n_train // config.batch_size if n_train > config.batch_size else 1
    return batches * config.epochs * config.soup * len(config.members())


def evaluate(
    model: CassavaNet | Ensemble,
    samples: Sequence[Sample],
    config: TrainConfig,
    limits: QualityThresholds,
    gate: LeafGate | None = None,
    negatives: Sequence[Sample] = (),
) -> dict[str, Any]:
    """The serving path on `samples` (and `negatives`), with the checkpoint's test-time augmentation and leaf gate."""
    checkpoint = Checkpoint(model, tuple(CLASSES), config.preprocess, "candidate", tta_views=config.tta_views,
                            leaf_gate=gate)  # fmt: skip
    predictor = Predictor(checkpoint)
    report = cassava_metrics(run_photos(predictor, samples, limits, progress=False), CLASSES)
    return report | gate_figures(report, run_photos(predictor, negatives, limits, progress=False))


def code_version() -> str:
    """The git commit of the code that trained, with '+dirty' when it had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class Dataset:
    samples: list[Sample]
    groups: list[int]
    version: str
    size: int
    negatives: list[Sample] = field(default_factory=list)  # photos that are not cassava leaves, for the leaf gate
    negative_groups: list[int] = field(default_factory=list)


def load_dataset(data_dir: Path, negatives_dir: Path | None = None) -> Dataset:
    """The class folders of `data_dir` and, from `negatives_dir` (default: `data_dir`/negatives if it exists),
    the photos that are not cassava leaves. The version hashes both."""
    samples = scan(data_dir, CLASSES)
    negatives = scan_negatives(negatives_dir) if negatives_dir else negatives_beside(data_dir)
    version, manifest = dataset_version(samples + negatives, CLASSES)
    version = declared_version(data_dir, samples + negatives) or version  # an exported dataset version keeps its id
    groups = near_duplicate_groups(perceptual_hashes(samples))
    negative_groups = near_duplicate_groups(perceptual_hashes(negatives))
    return Dataset(samples, groups, version, len(manifest), negatives, negative_groups)


def train(
    data_dir: Path,
    out: Path,
    config: TrainConfig,
    limits: QualityThresholds,
    made_by: str = "mhogo train",
    extra_meta: dict[str, Any] | None = None,
    negatives_dir: Path | None = None,
) -> TrainResult:
    started = time.monotonic()
    code = code_version()  # before training: the tree may change while it runs
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_dataset(data_dir, negatives_dir)
    train_set, val_set, test_set = train_val_test(
        data.samples, data.groups, config.val_fraction, config.test_fraction, config.seed
    )
    others = train_val_test(data.negatives, data.negative_groups, config.val_fraction, config.test_fraction,
                            config.seed) if data.negatives else ([], [], [])  # fmt: skip
    with tqdm(total=steps_per_fit(len(train_set), config), desc="training", unit="batch", dynamic_ncols=True) as bar:
        model, history = fit_recipe(train_set, config, bar, val_set)
    gate = None
    if others[0]:
        candidate = Checkpoint(model, tuple(CLASSES), config.preprocess, "candidate", tta_views=config.tta_views)
        gate = attach_gate(candidate, train_set, others[0], gate_config(config), config.augment, progress=True)
    reports = {part: evaluate(model, photos, config, limits, gate, negatives)
               for part, photos, negatives in (("val", val_set, others[1]), ("test", test_set, others[2]))
               if photos}  # fmt: skip
    finished = datetime.now(UTC)
    meta = {
        "made_by": made_by,
        "trained_at": finished.isoformat(),
        "seconds": round(time.monotonic() - started, 1),
        "code_version": code,
        "torch_version": str(torch.__version__),
        "dataset_version": data.version,
        "dataset_size": data.size,
        "near_duplicate_groups": len(set(data.groups)),
        "class_counts": dict(zip(CLASSES, class_counts(data.samples, len(CLASSES)), strict=True)),
        "split": {
            "train": len(train_set),
            "val": len(val_set),
            "test": len(test_set),
            "seed": config.seed,
            "negatives": [len(part) for part in others],
        },
        "input_reference": input_reference(train_set, config),
        "leaf_gate": gate.fitted if gate else None,
        "params": config.to_dict(),
        "history": history,
        **{f"{part}_metrics": _brief(report) for part, report in reports.items()},
        **{f"{part}_report": report for part, report in reports.items()},
        **(extra_meta or {}),
    }
    version = f"{config.name}-{finished:%Y%m%d-%H%M%S}"
    checkpoint = Checkpoint(model, tuple(CLASSES), config.preprocess, version, meta, tta_views=config.tta_views,
                            leaf_gate=gate)  # fmt: skip
    sha = save_checkpoint(checkpoint, out)
    return TrainResult(checkpoint, sha, out)


def input_reference(samples: Sequence[Sample], config: TrainConfig, limit: int = 1000) -> dict[str, Any]:
    """What the training photos look like (image statistics, class mix): live photos are compared with it for drift.
    At most `limit` photos, drawn with the run's seed: enough for decile bins."""
    chosen = list(samples) if len(samples) <= limit else random.Random(config.seed).sample(list(samples), limit)
    stats = [prepare(decode(s.path.read_bytes(), MAX_LOCAL_PIXELS), config.preprocess).stats for s in chosen]
    counts = class_counts(samples, len(CLASSES))
    return reference(stats, dict(zip(CLASSES, counts, strict=True)))


def gate_config(config: TrainConfig) -> GateConfig:
    return dataclasses.replace(config.gate, augmented_views=1) if config.dry_run else config.gate


def fold_splits(
    data: Dataset, folds: int, seed: int, negatives: bool = False
) -> list[tuple[list[Sample], list[Sample]]]:
    """(training photos, held-out photos) for each of k folds made of whole near-duplicate groups: of the cassava
    photos, or with `negatives` of the photos that are not cassava leaves."""
    photos, groups = (data.negatives, data.negative_groups) if negatives else (data.samples, data.groups)
    if not photos:
        return [([], []) for _ in range(folds)]
    assignment = group_folds(photos, groups, folds, seed)
    return [([s for s, f in zip(photos, assignment, strict=True) if f != k],
             [s for s, f in zip(photos, assignment, strict=True) if f == k]) for k in range(folds)]  # fmt: skip


def cross_validate(
    data_dir: Path,
    config: TrainConfig,
    limits: QualityThresholds,
    folds: int = 5,
    negatives_dir: Path | None = None,
    keep_dir: Path | None = None,
) -> dict[str, Any]:
    """k-fold cross-validation by whole near-duplicate groups: every photo is tested once, by a model that never
    saw it or its near-duplicates. With negatives, each fold's model also gets a leaf gate fitted on that fold's
    training photos, and its held-out photos (cassava and not) go through it, as in serving. Returns per-fold and
    pooled figures for every test-time augmentation, and the gate's figures for every choice of its inputs. With
    `keep_dir`, each fold's model (with its gate) is saved there as fold-K.pt, so later studies of the gate or the
    serving path need not train again."""
    started = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_dataset(data_dir, negatives_dir)
    splits = fold_splits(data, folds, config.seed)
    other_splits = fold_splits(data, folds, config.seed, negatives=True)
    total = sum(steps_per_fit(len(train_set), config) for train_set, _ in splits)
    measured = (config.tta_views,) if config.dry_run else (1, 2, 4)  # a dry run checks the path, not the choice
    outcomes: dict[int, list[Any]] = {views: [] for views in measured}
    per_fold: dict[int, list[dict[str, Any]]] = {views: [] for views in measured}
    gate_per_fold: list[dict[str, Any]] = []
    with tqdm(total=total, desc=f"{folds}-fold cross-validation", unit="batch", dynamic_ncols=True) as bar:
        for k, (train_set, held_out) in enumerate(splits):
            train_others, held_out_others = other_splits[k]
            model, _ = fit_recipe(train_set, config, bar)
            gate = None
            if train_others:
                gate, figures = fold_gate(model, config, train_set, train_others, held_out, held_out_others)
                gate_per_fold.append(figures)
            if keep_dir:
                keep_dir.mkdir(parents=True, exist_ok=True)
                meta = {"params": config.to_dict(), "fold": k, "folds": folds}
                kept = Checkpoint(model, tuple(CLASSES), config.preprocess, f"fold-{k}", meta,
                                  tta_views=config.tta_views, leaf_gate=gate)  # fmt: skip
                save_checkpoint(kept, keep_dir / f"fold-{k}.pt")
            for views in outcomes:
                checkpoint = Checkpoint(model, tuple(CLASSES), config.preprocess, f"fold-{k}", tta_views=views,
                                        leaf_gate=gate)  # fmt: skip
                predictor = Predictor(checkpoint)
                fold_outcomes = run_photos(predictor, held_out, limits, progress=False)
                outcomes[views] += fold_outcomes
                metrics = cassava_metrics(fold_outcomes, CLASSES)
                others = run_photos(predictor, held_out_others, limits, progress=False)
                per_fold[views].append(_brief(metrics) | gate_figures(metrics, others))
            bar.write(f"fold {k + 1}/{folds}: " + ", ".join(
                f"tta {v}: accuracy {per_fold[v][-1]['accuracy']:.3f}, macro-F1 {per_fold[v][-1]['macro_f1']:.3f}"
                for v in outcomes) + "; " + _gate_line(per_fold[config.tta_views][-1]), file=sys.stderr)  # fmt: skip
    report: dict[str, Any] = {
        "folds": folds,
        "seed": config.seed,
        "dataset_version": data.version,
        "photos": len(data.samples),
        "negatives": len(data.negatives),
        "near_duplicate_groups": len(set(data.groups)),
        "seconds": round(time.monotonic() - started, 1),
        "params": config.to_dict(),
    }
    if gate_per_fold:
        report["leaf_gate"] = {
            "per_fold": gate_per_fold,
            "mean_by_inputs": {
                inputs: {figure: round(sum(f["by_inputs"][inputs][figure] for f in gate_per_fold) / folds, 4)
                         for figure in gate_per_fold[0]["by_inputs"][inputs]}
                for inputs in gate_per_fold[0]["by_inputs"]
            },
        }  # fmt: skip
    for views, results in outcomes.items():
        pooled = cassava_metrics(results, CLASSES)
        report[f"tta_{views}"] = {
            "mean_accuracy": round(sum(f["accuracy"] for f in per_fold[views]) / folds, 4),
            "mean_macro_f1": round(sum(f["macro_f1"] for f in per_fold[views]) / folds, 4),
            **{
                f"mean_{figure}": round(sum(f[figure] for f in per_fold[views]) / folds, 4)
                for figure in ("false_rejection_rate", "negative_rejection_rate")
                if figure in per_fold[views][0]
            },
            "per_fold": per_fold[views],
            "pooled": pooled,
            "mistakes": [
                {
                    "photo": o.path.name,
                    "true": CLASSES[o.truth],
                    "predicted": CLASSES[o.predicted] if o.predicted >= 0 else str(o.reason),
                }
                for o in results
                if o.predicted != o.truth
            ],
        }
    return report


def fold_gate(
    model: CassavaNet | Ensemble,
    config: TrainConfig,
    train_set: Sequence[Sample],
    train_others: Sequence[Sample],
    held_out: Sequence[Sample],
    held_out_others: Sequence[Sample],
) -> tuple[LeafGate, dict[str, Any]]:
    """A fold's leaf gate, fitted on its training photos only, and how every choice of inputs does on its held-out
    photos."""
    gate_cfg = gate_config(config)
    checkpoint = Checkpoint(model, tuple(CLASSES), config.preprocess, "fold", tta_views=config.tta_views)
    views, seed = gate_cfg.augmented_views, gate_cfg.seed
    train_leaves = gate_data(checkpoint, train_set, config.augment, views, seed)
    train_other = gate_data(checkpoint, train_others, config.augment, views, seed)
    test_leaves = gate_data(checkpoint, held_out, config.augment, 0)
    test_others = gate_data(checkpoint, held_out_others, config.augment, 0)
    gate = fit_gate(train_leaves, train_other, gate_cfg)
    leaf = gate.probability(test_leaves.embedding, test_leaves.logits)
    other = gate.probability(test_others.embedding, test_others.logits)
    figures = {
        "threshold": round(gate.threshold, 6),
        "out_of_fold": gate.fitted["out_of_fold"],
        "by_inputs": compare_inputs(train_leaves, train_other, test_leaves, test_others, gate_cfg),
        "by_target": {  # the gate alone (no quality gate), on the held-out photos, at each false-rejection target
            target: {"false_rejection_rate": round(float((leaf < t).float().mean()), 4),
                     "negative_rejection_rate": round(float((other < t).float().mean()), 4)}
            for target, t in gate.fitted["threshold_by_target"].items()
        },
        "held_out_scores": {"cassava": [round(x, 5) for x in leaf.tolist()],
                            "negatives": [round(x, 5) for x in other.tolist()]},
    }  # fmt: skip
    return gate, figures


def _gate_line(figures: dict[str, Any]) -> str:
    if "negative_rejection_rate" not in figures:
        return "no negatives"
    return (f"leaf gate: negatives rejected {figures['negative_rejection_rate']:.3f}, "
            f"cassava rejected {figures['false_rejection_rate']:.3f}")  # fmt: skip


def cv_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a model's record keeps of the cross-validation of its recipe."""
    views = report["params"]["tta_views"]
    cv = report[f"tta_{views}"]
    return {
        "folds": report["folds"],
        "mean_accuracy": cv["mean_accuracy"],
        "mean_macro_f1": cv["mean_macro_f1"],
        "per_fold": cv["per_fold"],
        "confusion_matrix": cv["pooled"]["confusion_matrix"],
        "expected_calibration_error": cv["pooled"]["expected_calibration_error"],
        **{key: cv[key] for key in ("mean_false_rejection_rate", "mean_negative_rejection_rate") if key in cv},
    }


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "ece": metrics["expected_calibration_error"],
        "photos": metrics["photos"],
        "rejected": metrics["rejected"],
        **{key: metrics[key] for key in ("false_rejection_rate", "negative_rejection_rate") if key in metrics},
    }

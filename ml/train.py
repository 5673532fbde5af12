"""Fine-tune EfficientNet-Lite0 on class folders of cassava photos, on the CPU.

    mhogo train ../shared/data/cassava --out model.pt            # the baseline
    mhogo train ../shared/data/cassava --out /tmp/m.pt --dry-run  # two small batches, as CI runs it

Reads like pytorch/examples mnist/main.py: a config, a train epoch, an evaluation, a loop that keeps the best.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from ml.augment import AugmentConfig
from ml.checkpoint import Checkpoint, save_checkpoint
from ml.data import PhotoDataset, Sample, class_counts, dataset_version, scan, stratified_split
from ml.imaging import PreprocessConfig
from ml.metrics import summarize
from ml.model import CassavaNet, ModelConfig, load_imagenet_backbone
from schemas.labels import LABELS

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3  # head; the backbone gets lr * backbone_lr_scale
    backbone_lr_scale: float = 0.3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    warmup_epochs: int = 1
    val_fraction: float = 0.2
    seed: int = 42
    threads: int = 0
    dry_run: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    sha256: str
    path: Path


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def balanced_sampler(samples: list[Sample], num_classes: int, generator: torch.Generator) -> WeightedRandomSampler:
    """Draw each class equally often: CMD and healthy would otherwise drown CBSD and CGM."""
    counts = class_counts(samples, num_classes)
    weights = [1.0 / counts[s.label] for s in samples]
    return WeightedRandomSampler(weights, num_samples=len(samples), replacement=True, generator=generator)


def make_optimizer(model: CassavaNet, config: TrainConfig) -> torch.optim.Optimizer:
    head = list(model._fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
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
    max_batches: int | None,
    bar: tqdm,
) -> float:
    model.train()
    total, seen = 0.0, 0
    for step, (images, labels) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
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


@torch.inference_mode()
def evaluate(
    model: CassavaNet, loader: DataLoader[tuple[torch.Tensor, int]], loss_fn: nn.Module, max_batches: int | None
) -> dict[str, Any]:
    model.eval()
    targets, predictions, total = [], [], 0.0
    for step, (images, labels) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        logits = model(images)
        total += float(loss_fn(logits, labels)) * len(labels)
        targets.append(labels)
        predictions.append(logits.argmax(dim=-1))
    target = torch.cat(targets)
    metrics = summarize(target, torch.cat(predictions), [label.value for label in LABELS])
    metrics["loss"] = total / max(len(target), 1)
    return metrics


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


def train(data_dir: Path, out: Path, config: TrainConfig, made_by: str = "mhogo train") -> TrainResult:
    started = time.monotonic()
    code = code_version()  # before training: the tree may change while it runs
    generator = seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    classes = [label.value for label in LABELS]
    samples = scan(data_dir, classes)
    data_version, manifest = dataset_version(samples, classes)
    train_set, val_set = stratified_split(samples, config.val_fraction, config.seed)
    max_batches = 2 if config.dry_run else None
    epochs = 1 if config.dry_run else config.epochs
    batch_size = 4 if config.dry_run else config.batch_size

    model = CassavaNet(config.model)
    load_imagenet_backbone(model)
    train_data = PhotoDataset(train_set, config.preprocess, config.augment, seed=config.seed)
    train_loader = DataLoader(
        train_data, batch_size=batch_size, sampler=balanced_sampler(train_set, len(classes), generator), drop_last=True
    )
    val_loader = DataLoader(PhotoDataset(val_set, config.preprocess), batch_size=32)
    steps_per_epoch = min(len(train_loader), max_batches or len(train_loader))
    optimizer = make_optimizer(model, config)
    scheduler = warmup_cosine(optimizer, config.warmup_epochs * steps_per_epoch, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    history: list[dict[str, Any]] = []
    best_state, best_loss, best_metrics = copy.deepcopy(model.state_dict()), math.inf, {}
    with tqdm(total=epochs * steps_per_epoch, desc="training", unit="batch", dynamic_ncols=True) as bar:
        for epoch in range(epochs):
            train_data.set_epoch(epoch)
            train_loss = train_epoch(model, train_loader, optimizer, scheduler, loss_fn, max_batches, bar)
            val = evaluate(model, val_loader, loss_fn, max_batches)
            history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 4), **_brief(val)})
            bar.write(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.3f}, " + _describe(val))
            if val["loss"] < best_loss:  # on a small validation set the loss is steadier than the accuracy
                best_loss, best_state, best_metrics = val["loss"], copy.deepcopy(model.state_dict()), val

    model.load_state_dict(best_state)
    best = min(history, key=lambda row: row["val_loss"])
    finished = datetime.now(UTC)
    version = f"lite0-{finished:%Y%m%d-%H%M%S}"
    meta = {
        "made_by": made_by,
        "trained_at": finished.isoformat(),
        "seconds": round(time.monotonic() - started, 1),
        "code_version": code,
        "torch_version": str(torch.__version__),
        "dataset_version": data_version,
        "dataset_size": len(manifest),
        "class_counts": dict(zip(classes, class_counts(samples, len(classes)), strict=True)),
        "split": {"train": len(train_set), "val": len(val_set), "seed": config.seed},
        "params": _params(config),
        "history": history,
        "best_epoch": best["epoch"],
        "val_metrics": best,
        "val_report": {key: best_metrics[key] for key in ("per_class", "confusion_matrix")},
    }
    checkpoint = Checkpoint(model.eval(), tuple(classes), config.preprocess, version, meta)
    sha = save_checkpoint(checkpoint, out)
    return TrainResult(checkpoint, sha, out)


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "val_loss": round(metrics["loss"], 4),
        "val_accuracy": round(metrics["accuracy"], 4),
        "val_macro_f1": round(metrics["macro_f1"], 4),
    }


def _describe(metrics: dict[str, Any]) -> str:
    return f"val loss {metrics['loss']:.3f}, accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"


def _params(config: TrainConfig) -> dict[str, Any]:
    params = asdict(config)
    params["model"] = config.model.to_dict()
    return params

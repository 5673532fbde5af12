"""Fitting the leaf gate (ml/leafgate.py) on a trained classifier, and measuring it.

inputs     the classifier's pooled embedding and its logits' energy, for each training photo as served (with
           the model's test-time views) and for a few augmented views of it (random crops, flips, colour,
           blur: the same augmentation as training), so the gate knows cassava leaves in every framing
photos     cassava photos (every class) against photos of other things (../shared/data/negatives: other crops'
           leaves, soil, hands, food, objects)
fit        class-balanced logistic regression on standardised inputs (ml/linear.py)
threshold  from out-of-fold scores: the training photos are split into folds by photo (a photo's views stay
           together), each fold is scored by a gate fitted on the others, and the threshold is the score below
           which `false_rejection_target` of the cassava photos fall. Scores of photos a gate was fitted on are
           near 1 and would say nothing about new ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from ml.augment import AugmentConfig, augment
from ml.checkpoint import Checkpoint
from ml.data import Sample
from ml.imaging import MAX_LOCAL_PIXELS, decode, prepare
from ml.leafgate import GATE_INPUTS, LeafGate, gate_features
from ml.linear import fit_logistic, standardiser
from ml.predictor import Predictor
from ml.tensors import model_input, to_tensor

TARGETS = (0.01, 0.02, 0.03, 0.05, 0.08)  # false-rejection targets whose thresholds a fit also records


@dataclass(frozen=True)
class GateConfig:
    inputs: str = "embedding"  # what the logistic regression reads (GATE_INPUTS). In cross-validation the embedding
    # alone turned away half as many held-out cassava photos as embedding + energy (0.022 vs 0.043) for 0.6 points
    # fewer negatives (0.968 vs 0.974); the classifier's energy alone ranks poorly (AUROC 0.66).
    augmented_views: int = 4  # per training photo, besides the served view
    l2: float = 1e-2
    false_rejection_target: float = 0.03  # share of cassava photos (out of fold) the threshold may turn away
    inner_folds: int = 5
    seed: int = 0
    batch_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateData:
    """The gate's raw inputs for a set of photos: one row per view."""

    embedding: torch.Tensor  # (N, D)
    logits: torch.Tensor  # (N, C)
    photo: torch.Tensor  # (N,) index of the photo the row comes from
    served: torch.Tensor  # (N,) bool: the view as served (not an augmented one)

    def __len__(self) -> int:
        return len(self.photo)

    def features(self, inputs: str) -> torch.Tensor:
        return gate_features(inputs, self.embedding, self.logits)


@torch.inference_mode()
def gate_data(
    checkpoint: Checkpoint,
    samples: Sequence[Sample],
    augmentation: AugmentConfig,
    views: int,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> GateData:
    """Embeddings and logits of every photo as served (test-time views averaged, as the Predictor does) and of
    `views` augmented views of it. Decodes one photo at a time and keeps only the figures, never the pixels."""
    predictor = Predictor(checkpoint)
    model = predictor.model.eval()
    rows: list[tuple[torch.Tensor, torch.Tensor]] = []
    photos: list[int] = []
    served: list[bool] = []
    pending: list[tuple[int, torch.Tensor]] = []
    augmented: list[tuple[int, torch.Tensor]] = []

    def flush_served() -> None:
        if pending:
            out = predictor.outputs(torch.stack([t for _, t in pending]))
            rows.extend(zip(out.embedding, out.logits, strict=True))
            photos.extend(i for i, _ in pending)
            served.extend([True] * len(pending))
            pending.clear()

    def flush_augmented() -> None:
        if augmented:
            embedding = model.features(torch.stack([t for _, t in augmented]))
            rows.extend(zip(embedding, model.classify(embedding), strict=True))
            photos.extend(i for i, _ in augmented)
            served.extend([False] * len(augmented))
            augmented.clear()

    for index, sample in enumerate(tqdm(samples, desc="leaf gate inputs", unit="photo", disable=not progress)):
        image = prepare(decode(sample.path.read_bytes(), MAX_LOCAL_PIXELS), checkpoint.preprocess).image
        pending.append((index, model_input(image, checkpoint.preprocess)))
        rng = random.Random(f"{seed}:{sample.path.name}")
        for _ in range(views):
            view = augment(image, augmentation.crop_size, augmentation, rng)
            augmented.append((index, to_tensor(view, checkpoint.preprocess)))
        if len(pending) >= batch_size:
            flush_served()
        if len(augmented) >= batch_size:
            flush_augmented()
    flush_served()
    flush_augmented()
    if not rows:
        nothing = torch.empty(0, 0)
        return GateData(nothing, nothing, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.bool))
    return GateData(
        torch.stack([e for e, _ in rows]),
        torch.stack([logit for _, logit in rows]),
        torch.tensor(photos),
        torch.tensor(served),
    )


def _fit(x: torch.Tensor, is_leaf: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Standardise and fit: (mean, scale, weight, bias) of the logit of "cassava leaf"."""
    mean, scale = standardiser(x)
    head = fit_logistic((x - mean) / scale, is_leaf.long(), 2, l2)
    return mean, scale, head.weight[1] - head.weight[0], float(head.bias[1] - head.bias[0])


def _score(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, bias: float) -> torch.Tensor:
    return torch.sigmoid(((x - mean) / scale) @ weight + bias)


def threshold_at(leaf_scores: torch.Tensor, false_rejection: float) -> float:
    """The score below which at most `false_rejection` of these cassava-leaf scores fall."""
    ordered = leaf_scores.sort().values
    k = min(int(false_rejection * len(ordered)), len(ordered) - 1)
    return float(ordered[k])


@dataclass
class OutOfFold:
    """Every row's gate inputs, label and out-of-fold score: what a threshold is chosen from."""

    x: torch.Tensor  # (N, F) gate inputs
    is_leaf: torch.Tensor  # (N,) bool
    served: torch.Tensor  # (N,) bool: the view as served
    score: torch.Tensor  # (N,) P(cassava leaf) from a gate fitted without this row's photo


def out_of_fold(leaves: GateData, others: GateData, config: GateConfig) -> OutOfFold:
    """Split the photos into inner folds (a photo's views stay together) and score each fold with a gate fitted on
    the others."""
    x = torch.cat([leaves.features(config.inputs), others.features(config.inputs)])
    is_leaf = torch.cat([torch.ones(len(leaves), dtype=torch.bool), torch.zeros(len(others), dtype=torch.bool)])
    # Photo ids that do not collide between the two sets, each photo in one inner fold with all its views.
    photo = torch.cat([leaves.photo * 2, others.photo * 2 + 1])
    ids = sorted(set(photo.tolist()))
    random.Random(config.seed).shuffle(ids)
    fold_of = {photo_id: n % config.inner_folds for n, photo_id in enumerate(ids)}
    folds = torch.tensor([fold_of[p] for p in photo.tolist()])
    oof = torch.empty(len(x))
    for fold in range(config.inner_folds):
        inside = folds != fold
        oof[~inside] = _score(x[~inside], *_fit(x[inside], is_leaf[inside], config.l2))
    return OutOfFold(x, is_leaf, torch.cat([leaves.served, others.served]), oof)


def fit_gate(leaves: GateData, others: GateData, config: GateConfig) -> LeafGate:
    """The gate, with its threshold set on out-of-fold scores (see the module docstring)."""
    return gate_from(out_of_fold(leaves, others, config), config)


def gate_from(scored: OutOfFold, config: GateConfig) -> LeafGate:
    """The gate fitted on every row of `scored`, its threshold from the rows' out-of-fold scores."""
    x, is_leaf, served, oof = scored.x, scored.is_leaf, scored.served, scored.score
    threshold = threshold_at(oof[served & is_leaf], config.false_rejection_target)
    by_target = {str(t): threshold_at(oof[served & is_leaf], t) for t in TARGETS}
    mean, scale, weight, bias = _fit(x, is_leaf, config.l2)
    oof_served_others = oof[served & ~is_leaf]
    fitted = {
        "config": config.to_dict(),
        "cassava_photos": int((served & is_leaf).sum()),
        "other_photos": int((served & ~is_leaf).sum()),
        "rows": len(x),
        "out_of_fold": {
            "false_rejection_rate": round(float((oof[served & is_leaf] < threshold).float().mean()), 4),
            "negative_rejection_rate": round(float((oof_served_others < threshold).float().mean()), 4)
            if len(oof_served_others)
            else None,
            "auroc": round(auroc(oof[served & is_leaf], oof_served_others), 4),
        },
        "threshold_by_target": by_target,
    }
    return LeafGate(config.inputs, mean, scale, weight, bias, threshold, fitted)


def auroc(positives: torch.Tensor, negatives: torch.Tensor) -> float:
    """Chance that a cassava photo scores above a photo of something else (ties count half)."""
    if not len(positives) or not len(negatives):
        return float("nan")
    above = (positives[:, None] > negatives[None, :]).float() + 0.5 * (positives[:, None] == negatives[None, :]).float()
    return float(above.mean())


def attach_gate(
    checkpoint: Checkpoint,
    leaves: Sequence[Sample],
    others: Sequence[Sample],
    config: GateConfig,
    augmentation: AugmentConfig,
    progress: bool = False,
) -> LeafGate:
    """Fit a gate on these photos for this checkpoint's model and store it in the checkpoint."""
    data = [gate_data(checkpoint, photos, augmentation, config.augmented_views, config.seed, config.batch_size,
                      progress) for photos in (leaves, others)]  # fmt: skip
    checkpoint.leaf_gate = fit_gate(data[0], data[1], config)
    return checkpoint.leaf_gate


def compare_inputs(
    train_leaves: GateData, train_others: GateData, test_leaves: GateData, test_others: GateData, config: GateConfig
) -> dict[str, dict[str, float]]:
    """Every choice of gate inputs fitted on the training photos and scored on held-out ones (served views):
    AUROC, and the rejection rates at each one's own out-of-fold threshold. This is how the inputs were chosen."""
    figures = {}
    for inputs in GATE_INPUTS:
        gate = fit_gate(train_leaves, train_others, GateConfig(**{**config.to_dict(), "inputs": inputs}))
        leaf = gate.probability(test_leaves.embedding, test_leaves.logits)
        other = gate.probability(test_others.embedding, test_others.logits)
        figures[inputs] = {
            "auroc": round(auroc(leaf, other), 4),
            "false_rejection_rate": round(float((leaf < gate.threshold).float().mean()), 4),
            "negative_rejection_rate": round(float((other < gate.threshold).float().mean()), 4),
        }
    return figures

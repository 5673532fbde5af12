"""Splits that keep near-duplicate photos on one side: a perceptual hash groups them, and whole groups go to a fold.

Two photos of the same leaf taken a second apart would otherwise sit one in training and one in the test, and the
test would measure memory instead of diagnosis.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import imagehash
import numpy as np

from ml.data import Sample
from ml.imaging import MAX_LOCAL_PIXELS, decode

NEAR_DUPLICATE_BITS = 10  # of 64: phash distance at or below which two photos count as the same picture


def perceptual_hash(data: bytes) -> imagehash.ImageHash:
    return imagehash.phash(decode(data, MAX_LOCAL_PIXELS))


def perceptual_hashes(samples: Sequence[Sample]) -> list[imagehash.ImageHash]:
    return [perceptual_hash(s.path.read_bytes()) for s in samples]


def hash_words(hashes: Sequence[imagehash.ImageHash]) -> np.ndarray:
    """64-bit perceptual hashes as one unsigned integer each, for fast vectorised distances."""
    if not hashes:
        return np.zeros(0, dtype=np.uint64)
    bits = np.stack([np.asarray(h.hash, dtype=bool).reshape(-1) for h in hashes])
    return np.packbits(bits, axis=1).view(">u8").reshape(-1).astype(np.uint64)


def near_any(candidates: np.ndarray, others: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """For each candidate hash, whether any of `others` lies within `max_bits` of it."""
    if not len(candidates) or not len(others):
        return np.zeros(len(candidates), dtype=bool)
    found = np.zeros(len(candidates), dtype=bool)
    for start in range(0, len(others), 4096):  # bounded memory against tens of thousands of photos
        distance = np.bitwise_count(candidates[:, None] ^ others[None, start : start + 4096])
        found |= (distance <= max_bits).any(axis=1)
    return found


def near_duplicate_groups(hashes: Sequence[imagehash.ImageHash], max_bits: int = NEAR_DUPLICATE_BITS) -> list[int]:
    """A group id per photo: photos within `max_bits` of each other, directly or through others, share one."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if hashes[i] - hashes[j] <= max_bits:
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(len(hashes))]
    numbering = {r: n for n, r in enumerate(dict.fromkeys(roots))}
    return [numbering[r] for r in roots]


def assign_groups(samples: Sequence[Sample], groups: Sequence[int], fractions: Sequence[float], seed: int) -> list[int]:
    """A part per photo (index into `fractions`): whole groups only, each class shared out in those fractions.

    Groups go one by one (largest first, ties in a seeded order) to the part furthest below its share of that
    group's class.
    """
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    order = list(members)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -len(members[g]))
    class_totals = Counter(s.label for s in samples)
    taken = [Counter[int]() for _ in fractions]
    part_of_group: dict[int, int] = {}
    for group in order:
        label = Counter(samples[i].label for i in members[group]).most_common(1)[0][0]
        part = max(range(len(fractions)), key=lambda p: fractions[p] * class_totals[label] - taken[p][label])
        part_of_group[group] = part
        taken[part][label] += len(members[group])
    return [part_of_group[group] for group in groups]


def group_folds(samples: Sequence[Sample], groups: Sequence[int], k: int, seed: int) -> list[int]:
    """A fold per photo (0..k-1) for k-fold cross-validation."""
    return assign_groups(samples, groups, [1 / k] * k, seed)


def train_val_test(
    samples: Sequence[Sample], groups: Sequence[int], val: float, test: float, seed: int
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Split by whole groups into train / validation / test, stratified by class, reproducibly."""
    parts = assign_groups(samples, groups, [1 - val - test, val, test], seed)
    return tuple([s for s, p in zip(samples, parts, strict=True) if p == part] for part in range(3))  # type: ignore[return-value]

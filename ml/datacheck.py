"""`mhogo data check DIR`: what to clean before training on a folder of photos.

The same code screens training data as screens uploads: each photo is decoded and prepared as the workers do, and
the quality gate says whether a farmer's upload of it would have been turned away. Duplicates are found by file
hash, near-duplicates by perceptual hash (the grouping the splits use), and a near-duplicate group whose photos
carry different labels is flagged: one of the labels is wrong.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ml.data import Sample, label_name, negatives_beside, scan
from ml.imaging import MAX_LOCAL_PIXELS, PreprocessConfig, decode, prepare
from ml.quality import QualityThresholds, quality_gate
from ml.splits import NEAR_DUPLICATE_BITS, near_duplicate_groups
from schemas.errors import BadInput
from schemas.reasons import RejectReason


def photos_in(data_dir: Path, classes: Sequence[str]) -> list[Sample]:
    """The class folders (DIR/<class>/ or DIR/cassava/<class>/) and DIR/negatives/ if there is one."""
    return scan(data_dir, classes) + negatives_beside(data_dir)


def check_photos(
    samples: Sequence[Sample],
    classes: Sequence[str],
    limits: QualityThresholds,
    preprocess: PreprocessConfig,
    progress: bool = True,
) -> dict[str, Any]:
    import imagehash

    def name(sample: Sample) -> str:
        return f"{label_name(sample.label, classes)}/{sample.path.name}"

    failures: list[dict[str, str]] = []
    digests: dict[str, list[Sample]] = defaultdict(list)
    hashed: list[tuple[Sample, imagehash.ImageHash]] = []
    for sample in tqdm(samples, desc="checking", unit="photo", disable=not progress):
        data = sample.path.read_bytes()
        digests[hashlib.sha256(data).hexdigest()].append(sample)
        try:
            image = decode(data, MAX_LOCAL_PIXELS)
        except BadInput as exc:
            failures.append({"photo": name(sample), "reason": RejectReason.UNREADABLE.value, "detail": str(exc)})
            continue
        hashed.append((sample, imagehash.phash(image)))
        reason = quality_gate(prepare(image, preprocess).stats, limits)
        if reason is not None:
            failures.append({"photo": name(sample), "reason": reason.value, "detail": reason.message})
    groups = near_duplicate_groups([h for _, h in hashed])
    members: dict[int, list[Sample]] = defaultdict(list)
    for (sample, _), group in zip(hashed, groups, strict=True):
        members[group].append(sample)
    near = [photos for photos in members.values() if len(photos) > 1]
    return {
        "photos": len(samples),
        "class_counts": dict(Counter(label_name(s.label, classes) for s in samples)),
        "duplicates": [[name(s) for s in same] for same in digests.values() if len(same) > 1],
        "near_duplicates": [[name(s) for s in group] for group in near],
        "near_duplicate_bits": NEAR_DUPLICATE_BITS,
        "label_conflicts": [[name(s) for s in group] for group in near if len({s.label for s in group}) > 1],
        "gate_failures": failures,
        "gate_failures_by_reason": dict(Counter(f["reason"] for f in failures)),
    }

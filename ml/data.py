"""Photos on disk as a dataset: class folders, a hashed manifest (the dataset version), splits, and a torch Dataset
that decodes each photo when asked, so training streams from disk and never holds every photo in memory."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ml.augment import AugmentConfig, augment
from ml.files import file_sha256
from ml.imaging import MAX_LOCAL_PIXELS, PreprocessConfig, decode, prepare
from ml.tensors import model_input, to_tensor
from schemas.errors import BadInput

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def class_root(data_dir: Path, classes: Sequence[str]) -> Path:
    """Accept both `DIR/<class>/` and a `../shared/data`-like `DIR/cassava/<class>/`."""
    if all((data_dir / name).is_dir() for name in classes):
        return data_dir
    nested = data_dir / "cassava"
    if all((nested / name).is_dir() for name in classes):
        return nested
    raise FileNotFoundError(f"{data_dir}: expected one folder per class ({', '.join(classes)})")


def scan(data_dir: Path, classes: Sequence[str]) -> list[Sample]:
    root = class_root(data_dir, classes)
    return [
        Sample(path, index)
        for index, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


NEGATIVE = -1  # the label of a photo that is not a cassava leaf


def label_name(label: int, classes: Sequence[str]) -> str:
    return "negative" if label == NEGATIVE else classes[label]


def scan_negatives(folder: Path) -> list[Sample]:
    """Photos of things that are not cassava leaves, all in one folder (../shared/data/negatives)."""
    return [Sample(p, NEGATIVE) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def negatives_beside(data_dir: Path) -> list[Sample]:
    """The photos of `data_dir`/negatives, laid out like ../shared/data; none when there is no such folder."""
    folder = data_dir / "negatives"
    return scan_negatives(folder) if folder.is_dir() else []


def dataset_version(samples: Sequence[Sample], classes: Sequence[str]) -> tuple[str, list[dict[str, str]]]:
    """A manifest of (file hash, label), and its hash: the same photos with the same labels give the same version."""
    manifest = sorted(
        ({"sha256": file_sha256(s.path), "label": label_name(s.label, classes), "name": s.path.name} for s in samples),
        key=lambda row: (row["label"], row["sha256"]),
    )
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return f"ds-{digest[:16]}", manifest


def declared_version(data_dir: Path, samples: Sequence[Sample]) -> str | None:
    """The dataset version a `mhogo dataset export` folder names in its MANIFEST.csv, once every photo the manifest
    gives to training is there, unchanged (sha256), and no other photo is; None for a folder whose MANIFEST.csv names
    no version (../shared/data's) or that has none. A folder that does not match its manifest is refused."""
    path = data_dir / "MANIFEST.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or "dataset_version" not in rows[0]:
        return None
    versions = {row["dataset_version"] for row in rows}
    if len(versions) != 1:
        raise BadInput(f"{path} names several dataset versions: {', '.join(sorted(versions))}")
    named = {(data_dir / row["path"]).resolve(): row["sha256"] for row in rows if row["split"] == "train"}
    found = {sample.path.resolve() for sample in samples}
    missing, extra = named.keys() - found, found - named.keys()
    if missing or extra:
        raise BadInput(f"{data_dir} does not hold what its MANIFEST.csv says: {len(missing)} photos missing, "
                       f"{len(extra)} not in it (e.g. {sorted(map(str, missing | extra))[0]})")  # fmt: skip
    changed = [str(photo) for photo, sha in named.items() if file_sha256(photo) != sha]
    if changed:
        raise BadInput(f"{len(changed)} photos changed since the export, e.g. {changed[0]}: export the version again")
    return versions.pop()


def class_counts(samples: Sequence[Sample], num_classes: int) -> list[int]:
    counts = Counter(s.label for s in samples)
    return [counts.get(i, 0) for i in range(num_classes)]


class PhotoDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decodes and preprocesses each photo on access; augments when an AugmentConfig is given."""

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocess: PreprocessConfig,
        augmentation: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, index) only: reproducible whatever the loader's workers do."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        prepared = prepare(decode(sample.path.read_bytes(), MAX_LOCAL_PIXELS), self.preprocess)
        if self.augmentation is None:
            return model_input(prepared.image, self.preprocess), sample.label
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
        image = augment(prepared.image, self.augmentation.crop_size, self.augmentation, rng)
        return to_tensor(image, self.preprocess), sample.label

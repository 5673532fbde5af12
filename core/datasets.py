"""Dataset versions: a labelled set frozen as a manifest whose hash is its id (as DVC names data by content), with
the photos it names kept in the blob store, so every model can say exactly what it learned from.

`snapshot` takes every photo whose label, by the one rule (core.labels.decide), is a class or `not_cassava`; left
out, each counted with its reason: no trusted label yet, agronomists disagreeing with nobody deciding, `unusable`,
bytes deleted by retention before the photo was kept, and, of farmers' labels, those that would put one device
behind more than MAX_DEVICE_SHARE of them.

Splits never move: a photo's side (train or holdout) is fixed the first time a version takes it (`photo_splits`).
A new photo within NEAR_DUPLICATE_BITS of one already split joins that side; new near-duplicates go to one side
together; the holdout grows only from agronomists' labels (a new group whose every photo an agronomist labelled goes
there when a hash of its first photo falls under DATASET_HOLDOUT_SHARE); everything else trains.

The manifest is CSV (path, label, sha256, split, source, labelled_by, job_id), sorted; the id is "ds-" and 16 hex of
its sha256, so the same labelled set is the same version, made once. Its photos are copied once into the blob
store's `datasets/` (content-addressed), so a version stays exportable after retention deletes a job's photo.
Retention: those files are kept while a version names them, and no version is deleted automatically (an operator
deletes a version's row and files by hand when a legal request asks; nothing else does).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from core.blobs import BlobStore
from core.config import Settings
from core.feedback import device_limit
from core.labels import NOT_CASSAVA, UNUSABLE, LabelledPhoto, decide, decisions, history
from core.review import share
from schemas.errors import BadInput
from schemas.labels import LABELS
from schemas.tables import DatasetVersion, LabelSource, PhotoSplit, User

NAMESPACE = "datasets"
MANIFESTS = "manifests"
FIELDS = ("path", "label", "sha256", "split", "source", "labelled_by", "job_id")
CLASSES = [label.value for label in LABELS]
TRAIN, HOLDOUT = "train", "holdout"


@dataclass(frozen=True)
class Entry:
    sha256: str
    label: str
    split: str
    source: str
    labelled_by: str
    job_id: str
    suffix: str

    @property
    def path(self) -> str:
        folder = f"cassava/{self.label}" if self.label in CLASSES else "negatives"
        return f"{'holdout/' if self.split == HOLDOUT else ''}{folder}/{self.sha256[:16]}{self.suffix}"

    def row(self) -> dict[str, str]:
        return {"path": self.path, "label": self.label, "sha256": self.sha256, "split": self.split,
                "source": self.source, "labelled_by": self.labelled_by, "job_id": self.job_id}  # fmt: skip


def manifest_bytes(entries: Iterable[Entry]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
    writer.writeheader()
    for entry in sorted(entries, key=lambda e: (e.split, e.label, e.sha256)):
        writer.writerow(entry.row())
    return out.getvalue().encode()


def version_id(manifest: bytes) -> str:
    return "ds-" + hashlib.sha256(manifest).hexdigest()[:16]


def photo_key(sha256: str, suffix: str) -> str:
    return BlobStore.key_for(NAMESPACE, sha256, suffix)


def keep(blobs: BlobStore, sha256: str, suffix: str, data: bytes) -> None:
    """The photo's bytes in the datasets' folder, once; bytes that are not this photo are refused."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BadInput(f"the bytes given for photo {sha256[:12]} are another photo's")
    key = photo_key(sha256, suffix)
    if not blobs.exists(key):
        blobs.put_at(key, data)


def save_version(
    session: Session, blobs: BlobStore, entries: Sequence[Entry], created_by: str, left_out: dict[str, int]
) -> DatasetVersion:
    """Record the version these entries make (their photos kept already), or return it if it exists."""
    manifest = manifest_bytes(entries)
    found = session.get(DatasetVersion, version_id(manifest))
    if found is not None:
        return found
    counts: dict[str, Any] = {TRAIN: {}, HOLDOUT: {}}
    for entry in entries:
        counts[entry.split][entry.label] = counts[entry.split].get(entry.label, 0) + 1
    latest = session.exec(select(DatasetVersion).order_by(col(DatasetVersion.created_at).desc())).first()
    row = DatasetVersion(id=version_id(manifest), created_by=created_by, parent=latest.id if latest else None,
                         manifest_key=blobs.put(MANIFESTS, manifest, ".csv"), photos=len(entries),
                         counts=counts | {"left_out": dict(left_out)})  # fmt: skip
    session.add(row)
    return row


# Snapshots ---------------------------------------------------------------------------------------------------------


def who(photo: LabelledPhoto, names: dict[int, str]) -> str:
    if photo.decision.source == LabelSource.CURATED:
        return "curated"
    if photo.decision.source == LabelSource.FARMER:
        return " ".join(f"device:{device}" for device in sorted(photo.decision.devices))
    return " ".join(sorted(names.get(user, f"user:{user}") for user in photo.decision.users)) or "agronomist"


def usable(session: Session, blobs: BlobStore, config: Settings, left_out: Counter[str]) -> list[LabelledPhoto]:
    photos = []
    for photo in decisions(session, config.FARMERS_TO_AGREE):
        decision = photo.decision
        if decision.label is None:
            left_out["agronomists disagree, waiting for a third" if decision.contested else "no trusted label"] += 1
        elif decision.label == UNUSABLE:
            left_out["unusable, an agronomist said"] += 1
        elif not photo.blob_key or not (blobs.exists(photo.blob_key) or blobs.exists(kept_key(photo))):
            left_out["photo deleted by retention before a version kept it"] += 1
        else:
            photos.append(photo)
    return capped(photos, config.MAX_DEVICE_SHARE, left_out)


def kept_key(photo: LabelledPhoto) -> str:
    return photo_key(photo.photo_sha256, Path(str(photo.blob_key)).suffix or ".jpg")


def capped(photos: list[LabelledPhoto], max_share: float, left_out: Counter[str]) -> list[LabelledPhoto]:
    """Farmers' labels with no device behind more than `max_share` of them; the others as they are."""
    farmers = [photo for photo in photos if photo.decision.source == LabelSource.FARMER]
    limit = max(1, device_limit(max_share, len(farmers)))
    behind: Counter[int] = Counter()
    kept = []
    for photo in photos:
        devices = photo.decision.devices if photo.decision.source == LabelSource.FARMER else frozenset()
        if any(behind[device] >= limit for device in devices):
            left_out["one device behind more than MAX_DEVICE_SHARE of the farmers' labels"] += 1
            continue
        behind.update(devices)
        kept.append(photo)
    return kept


def _hashes(blobs: BlobStore, keys: Sequence[str]) -> np.ndarray:
    from ml.splits import hash_words, perceptual_hash

    return hash_words([perceptual_hash(blobs.get(key)) for key in keys])


def assign_splits(
    session: Session, blobs: BlobStore, config: Settings, photos: Sequence[LabelledPhoto]
) -> tuple[dict[str, str], list[PhotoSplit]]:
    """Every photo's side: the one it has, or for a new one, its near-duplicate's or its group's (rule above)."""
    from ml.splits import NEAR_DUPLICATE_BITS

    fixed = {row.photo_sha256: row for row in session.exec(select(PhotoSplit)).all()}
    sides = {photo.photo_sha256: fixed[photo.photo_sha256].split for photo in photos if photo.photo_sha256 in fixed}
    new = [photo for photo in photos if photo.photo_sha256 not in fixed]
    if not new:
        return sides, []
    words = _hashes(blobs, [str(p.blob_key) if blobs.exists(str(p.blob_key)) else kept_key(p) for p in new])
    old = list(fixed.values())
    old_words = np.array([int(row.phash, 16) for row in old], dtype=np.uint64)
    parent = list(range(len(new)))  # new photos within NEAR_DUPLICATE_BITS of each other, directly or not: one group

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(new)):
        for j in np.flatnonzero(np.bitwise_count(words[i] ^ words[:i]) <= NEAR_DUPLICATE_BITS):
            parent[root(int(j))] = root(i)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(new)):
        members[root(i)].append(i)
    rows = []
    for indices in members.values():
        side = None
        for i in indices:
            if len(old_words):
                distance = np.bitwise_count(old_words ^ words[i])
                if distance.min() <= NEAR_DUPLICATE_BITS:
                    side = old[int(distance.argmin())].split
                    break
        if side is None:
            agronomists = all(new[i].decision.source == LabelSource.AGRONOMIST for i in indices)
            first = new[indices[0]].photo_sha256
            side = HOLDOUT if agronomists and share(first, "holdout") < config.DATASET_HOLDOUT_SHARE else TRAIN
        for i in indices:
            sides[new[i].photo_sha256] = side
            rows.append(PhotoSplit(photo_sha256=new[i].photo_sha256, split=side, phash=f"{int(words[i]):016x}",
                                   dataset_version=""))  # fmt: skip
    return sides, rows


def snapshot(session: Session, blobs: BlobStore, config: Settings, created_by: str) -> DatasetVersion:
    """Freeze the labelled set as it is now; the same set gives the same version."""
    left_out: Counter[str] = Counter()
    photos = usable(session, blobs, config, left_out)
    sides, new_rows = assign_splits(session, blobs, config, photos)
    names = {user.id: user.name for user in session.exec(select(User)).all() if user.id is not None}
    entries = []
    for photo in photos:
        suffix = Path(str(photo.blob_key)).suffix or ".jpg"
        if not blobs.exists(photo_key(photo.photo_sha256, suffix)):
            keep(blobs, photo.photo_sha256, suffix, blobs.get(str(photo.blob_key)))
        entries.append(Entry(photo.photo_sha256, str(photo.decision.label), sides[photo.photo_sha256],
                             str(photo.decision.source), who(photo, names), photo.job_id or "", suffix))  # fmt: skip
    version = save_version(session, blobs, entries, created_by, dict(left_out))
    for row in new_rows:
        row.dataset_version = version.id
        session.add(row)
    session.commit()
    return version


def record_built(
    session: Session, blobs: BlobStore, train_dir: Path, eval_dir: Path | None, created_by: str,
    left_out: dict[str, int], farmers_to_agree: int,
) -> DatasetVersion:  # fmt: skip
    """The version of what a retraining run built (core.retraining): every photo it trains on (train) and judges on
    (its held-out feedback: holdout), kept like a snapshot's, so the challenger records exactly what it learned from
    and `mhogo dataset export` can write it out again."""
    names = {user.id: user.name for user in session.exec(select(User)).all() if user.id is not None}
    entries = []
    folders = [(train_dir / "cassava", TRAIN), (train_dir / "negatives", TRAIN)]
    folders += [(eval_dir / "cassava", HOLDOUT)] if eval_dir is not None else []
    for folder, split in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            label = path.parent.name if path.parent.name in CLASSES else NOT_CASSAVA
            keep(blobs, sha, path.suffix.lower() or ".jpg", data)
            job = path.stem.removeprefix("feedback-") if path.name.startswith("feedback-") else ""
            decision = decide(history(session, sha), farmers_to_agree) if job else None
            source = str(decision.source) if decision is not None and decision.source else "curated"
            labelled_by = who(LabelledPhoto(sha, None, job, decision, ()), names) if decision else "curated"
            entries.append(Entry(sha, label, split, source, labelled_by, job, path.suffix.lower() or ".jpg"))
    version = save_version(session, blobs, entries, created_by, left_out)
    session.commit()
    return version


# Reading versions ---------------------------------------------------------------------------------------------------


def get_version(session: Session, version: str) -> DatasetVersion:
    row = session.get(DatasetVersion, version)
    if row is None:
        raise BadInput(f"no dataset version {version!r}: `mhogo dataset list` shows them")
    return row


def list_versions(session: Session) -> list[DatasetVersion]:
    return list(session.exec(select(DatasetVersion).order_by(col(DatasetVersion.created_at).desc())).all())


def manifest(blobs: BlobStore, version: DatasetVersion) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(blobs.get(version.manifest_key).decode())))


def diff(session: Session, blobs: BlobStore, a: str, b: str) -> dict[str, dict[str, int]]:
    """Per label, what B has that A had not: photos added, removed, relabelled to it and away from it."""
    old = {row["sha256"]: row for row in manifest(blobs, get_version(session, a))}
    new = {row["sha256"]: row for row in manifest(blobs, get_version(session, b))}
    changes: dict[str, Counter[str]] = defaultdict(Counter)
    for sha in new.keys() - old.keys():
        changes[new[sha]["label"]]["added"] += 1
    for sha in old.keys() - new.keys():
        changes[old[sha]["label"]]["removed"] += 1
    for sha in old.keys() & new.keys():
        if old[sha]["split"] != new[sha]["split"]:
            raise AssertionError(f"photo {sha[:12]} moved from {old[sha]['split']} to {new[sha]['split']}")
        if old[sha]["label"] != new[sha]["label"]:
            changes[new[sha]["label"]]["relabelled_to"] += 1
            changes[old[sha]["label"]]["relabelled_from"] += 1
    return {label: dict(counts) for label, counts in sorted(changes.items())}


def export(session: Session, blobs: BlobStore, version: str, out: Path) -> int:
    """Write the version in ../shared/data's layout (train split at the top, holdout under holdout/) with its
    MANIFEST.csv, which names the version; every file checked against its hash. The number of photos written."""
    row = get_version(session, version)
    rows = manifest(blobs, row)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise BadInput(f"{out} is not empty: export into a new folder")
    for label in CLASSES:  # every class's folder, even an empty one: training looks for all of them
        (out / "cassava" / label).mkdir(parents=True)
    for entry in rows:
        data = blobs.get(photo_key(entry["sha256"], Path(entry["path"]).suffix))
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BadInput(f"the stored photo {entry['sha256'][:12]} does not match its hash: the store is damaged")
        target = out / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    with (out / "MANIFEST.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, [*FIELDS, "dataset_version"], lineterminator="\n")
        writer.writeheader()
        for entry in rows:
            writer.writerow(entry | {"dataset_version": row.id})
    return len(rows)


def describe(version: DatasetVersion) -> str:
    counts = version.counts
    split = "  ".join(f"{name} {sum(counts.get(name, {}).values())}" for name in (TRAIN, HOLDOUT))
    made = f"{version.created_at:%Y-%m-%d %H:%M}"
    return f"{version.id}  {made}  {version.photos:>6} photos  {split}  by {version.created_by}"

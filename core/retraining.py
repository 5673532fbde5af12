"""A retraining run, from the labelled feedback to the decision: build a new dataset version (the base data plus
photos with trusted labels), train the challenger with the champion's own recipe, judge both on the same photos,
register the challenger, and promote it only if it wins (and automatic promotion is not paused).

Feedback photos are split once, by a hash of their job id, into training and evaluation (MHOGO_FEEDBACK_HOLDOUT_SHARE),
so a later run judges on the same held-out photos. Left out, each with its reason counted: photos without a trusted
label (one farmer's word, or farmers who disagree), near-duplicates of a holdout photo (they would leak it), of a
base photo or of each other (the first one kept), near-duplicate groups that carry conflicting labels, held-out
photos whose label is the farmers' (promotion is judged on curated and agronomist-labelled photos only), and, of
those that train, a device's photos beyond MHOGO_MAX_DEVICE_SHARE of them.

A challenger is promoted only once judged on the frozen holdout (MHOGO_HOLDOUT_DIR): without one it is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from core import registry
from core.blobs import BlobStore
from core.config import Settings
from core.datasets import export, record_built
from core.feedback import LabelledPhoto, labelled_photos, share_capped
from core.labels import decisions
from core.triggers import finish_run, start_run, switch_on
from ml.data import Sample, class_root, negatives_beside, scan
from ml.files import file_sha256
from ml.splits import hash_words, near_any, near_duplicate_groups, perceptual_hashes
from schemas.labels import LABELS
from schemas.tables import (
    FeedbackSource,
    LabelSource,
    ModelAliasName,
    ModelVersion,
    RetrainRun,
    RetrainStatus,
    SwitchName,
)

log = logging.getLogger(__name__)

CLASSES = [label.value for label in LABELS]


FARMERS_DO_NOT_JUDGE = "held out to judge on, but a farmers' label (promotion is judged on agronomists' labels)"
OVER_DEVICE_SHARE = "one device behind more than MAX_DEVICE_SHARE of the feedback photos"
NO_HOLDOUT = ("no frozen holdout to judge on: set MHOGO_HOLDOUT_DIR (curated photos, never trained on); a challenger "
              "is promoted only once judged there")  # fmt: skip


def held_out(job_id: str, share: float) -> bool:
    """Whether a labelled photo is kept for evaluation: fixed per photo, so every run judges on the same ones."""
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


@dataclass
class BuiltDataset:
    train_dir: Path  # cassava/<class>/ (base photos linked, feedback photos written) and negatives/ (linked)
    eval_dir: Path | None  # the held-out feedback photos, cassava/<class>/; None when there are none
    base_photos: int
    added: int
    held_out: int
    left_out: dict[str, int] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"train_dir": str(self.train_dir), "eval_dir": str(self.eval_dir) if self.eval_dir else None,
                "base_photos": self.base_photos, "feedback_added": self.added, "feedback_held_out": self.held_out,
                "left_out": self.left_out}  # fmt: skip


def _class_dirs(root: Path) -> Path:
    for name in CLASSES:
        (root / "cassava" / name).mkdir(parents=True, exist_ok=True)
    return root


def _write(blobs: BlobStore, photo: LabelledPhoto, root: Path) -> Path:
    path = root / "cassava" / str(photo.label) / f"feedback-{photo.job_id}{Path(photo.blob_key).suffix or '.jpg'}"
    path.write_bytes(blobs.get(photo.blob_key))
    return path


def build_dataset(
    session: Session, blobs: BlobStore, config: Settings, base: Path, out: Path, holdout: Path | None
) -> BuiltDataset:
    if out.exists():
        shutil.rmtree(out)  # a run redelivered after a crash builds its dataset again from scratch
    train_dir, eval_dir = _class_dirs(out / "train"), _class_dirs(out / "eval")
    base_samples = scan(base, CLASSES)
    relabelled = agronomists_labels(session, config)
    left_out: Counter[str] = Counter()
    for sample in base_samples:
        label = relabelled.get(file_sha256(sample.path), CLASSES[sample.label])
        if label not in CLASSES:  # an agronomist found the base photo is no cassava leaf, or unusable
            left_out[f"a base photo an agronomist labelled {label}"] += 1
            continue
        link = train_dir / "cassava" / label / f"base-{sample.path.name}"
        link.symlink_to(sample.path.resolve())
    negatives = negatives_beside(base) or negatives_beside(class_root(base, CLASSES).parent)
    if negatives:
        (train_dir / "negatives").symlink_to(negatives[0].path.parent.resolve(), target_is_directory=True)
    photos = []
    for photo in reversed(labelled_photos(session, config.FARMERS_TO_AGREE)):  # oldest first: it is the one kept
        if photo.label not in CLASSES:
            left_out["no trusted label (one farmer's word, or farmers disagree)"] += 1
        elif not blobs.exists(photo.blob_key):  # labelled after retention had deleted its photo (core.retention)
            left_out["photo deleted by retention before it was labelled"] += 1
        else:
            photos.append(photo)
    staging = _class_dirs(out / "staging")
    paths = [_write(blobs, photo, staging) for photo in photos]
    hashes = perceptual_hashes([Sample(path, 0) for path in paths])
    words = hash_words(hashes)
    holdout_samples = scan(holdout, CLASSES) + negatives_beside(holdout) if holdout else []
    leaks = near_any(words, hash_words(perceptual_hashes(holdout_samples)))
    known = near_any(words, hash_words(perceptual_hashes(base_samples)))
    groups = near_duplicate_groups(hashes)
    labels_in_group: dict[int, set[str]] = {}
    for group, photo in zip(groups, photos, strict=True):
        labels_in_group.setdefault(group, set()).add(str(photo.label))
    seen: set[int] = set()
    chosen: list[tuple[LabelledPhoto, Path, bool]] = []  # each photo kept, its staged file, and whether it judges
    for index, (photo, path) in enumerate(zip(photos, paths, strict=True)):
        group = groups[index]
        if leaks[index]:
            left_out["near-duplicate of a holdout photo"] += 1
        elif known[index]:
            left_out["near-duplicate of a base photo"] += 1
        elif len(labels_in_group[group]) > 1:
            left_out["near-duplicates with conflicting labels"] += 1
        elif group in seen:
            left_out["near-duplicate of another feedback photo"] += 1
        else:
            seen.add(group)
            first = photos[groups.index(group)]  # a whole near-duplicate group goes to one side
            judges = held_out(first.job_id, config.FEEDBACK_HOLDOUT_SHARE)
            if judges and photo.label_source != FeedbackSource.AGRONOMIST:
                left_out[FARMERS_DO_NOT_JUDGE] += 1
            else:
                chosen.append((photo, path, judges))
    trains = share_capped([photo for photo, _, judges in chosen if not judges], config.MAX_DEVICE_SHARE)
    allowed = {photo.job_id for photo in trains}
    added = kept_out = 0
    for photo, path, judges in chosen:
        if not judges and photo.job_id not in allowed:
            left_out[OVER_DEVICE_SHARE] += 1
            continue
        target = eval_dir if judges else train_dir
        path.rename(target / "cassava" / str(photo.label) / path.name)
        added += not judges
        kept_out += judges
    shutil.rmtree(staging)
    return BuiltDataset(train_dir, eval_dir if kept_out else None, len(base_samples), added, kept_out, dict(left_out))


def from_version(
    session: Session, blobs: BlobStore, config: Settings, version: str, out: Path
) -> tuple[BuiltDataset, str]:
    """A dataset version written out to train on: its train split trains, its holdout split judges beside the
    frozen holdout. Its training photos that are near-duplicates of a frozen holdout photo are counted in the run's
    record (a version's splits do not know the operator's holdout folder): they are a warning, not taken out, since
    the version must stay what it is."""
    if out.exists():
        shutil.rmtree(out)  # a run redelivered after a crash writes it again
    written = export(session, blobs, version, out)
    train_samples = scan(out, CLASSES)
    held = out / "holdout"
    leaks = 0
    if config.HOLDOUT_DIR is not None and train_samples:
        frozen = scan(config.HOLDOUT_DIR, CLASSES) + negatives_beside(config.HOLDOUT_DIR)
        leaks = int(near_any(hash_words(perceptual_hashes(train_samples)), hash_words(perceptual_hashes(frozen))).sum())
    judged = len(scan(_class_dirs(held), CLASSES))
    left = {"near-duplicates of a frozen holdout photo, still in the version's training split": leaks} if leaks else {}
    built = BuiltDataset(out, held if judged else None, len(train_samples), 0, judged, left)
    log.info("retraining on %s: %d photos written, %d train, %d judge", version, written, len(train_samples), judged)
    return built, version


def agronomists_labels(session: Session, config: Settings) -> dict[str, str]:
    """Photos whose label, by the one rule (core.labels), is an agronomist's: a base photo they relabelled through
    the review queue trains with their label."""
    return {photo.photo_sha256: str(photo.decision.label) for photo in decisions(session, config.FARMERS_TO_AGREE)
            if photo.decision.source == LabelSource.AGRONOMIST and photo.decision.label is not None}  # fmt: skip


def evaluation_sets(config: Settings, built: BuiltDataset) -> dict[str, Path]:
    sets = {}
    if config.HOLDOUT_DIR is not None:
        sets["holdout"] = config.HOLDOUT_DIR
    if built.eval_dir is not None:
        sets["feedback"] = built.eval_dir
    return sets


def run_retraining(
    session: Session, blobs: BlobStore, config: Settings, run_id: int, threads: int, seed_model: Path
) -> RetrainRun:
    """Carry a fired run through to its decision; the run row records every step's figures."""
    from ml.challenge import judge
    from ml.train import TrainConfig, train

    run = start_run(session, run_id)
    if run is None:
        log.warning("retraining run %d is finished already: not training again", run_id)
        found = session.get(RetrainRun, run_id)
        assert found is not None
        return found
    if config.TRAIN_DATA_DIR is None:
        finish_run(session, run, RetrainStatus.FAILED, "no base data: set MHOGO_TRAIN_DATA_DIR")
        return run
    champion = registry.ensure_champion(session, blobs, seed_model)
    chosen = run.figures.get("dataset_version")
    if chosen:  # an operator's `mhogo retrain --dataset VERSION`: that version's photos, as exported
        built, version_id = from_version(session, blobs, config, str(chosen), config.model_dir / f"run-{run_id}")
    else:
        built = build_dataset(session, blobs, config, config.TRAIN_DATA_DIR, config.model_dir / f"run-{run_id}",
                              config.HOLDOUT_DIR)  # fmt: skip
        version_id = record_built(session, blobs, built.train_dir, built.eval_dir, f"retraining run {run_id}",
                                  built.left_out, config.FARMERS_TO_AGREE).id  # fmt: skip
    run.dataset, run.dataset_version = built.record(), version_id
    session.add(run)
    session.commit()
    recipe = TrainConfig.from_dict(champion.params) if champion.params else TrainConfig()
    recipe = dataclasses.replace(recipe, dry_run=config.RETRAIN_DRY_RUN, threads=threads)
    made_by = f"retraining run {run_id} ({run.rule})"
    out = config.model_dir / f"challenger-run{run_id}.pt"
    trigger = {"retrain_run": run_id, "trigger": {"rule": run.rule, "figures": run.figures},
               "dataset_version": version_id}  # fmt: skip
    result = train(built.train_dir, out, recipe, config.quality_thresholds, made_by=made_by, extra_meta=trigger)
    challenger = registry.register(session, blobs, out, made_by=made_by, parent=champion.version)
    registry.set_alias(session, ModelAliasName.CHALLENGER, challenger.version, made_by, "trained")
    run.challenger_version, run.dataset_version = challenger.version, challenger.dataset_version
    sets = evaluation_sets(config, built)
    limits = config.quality_thresholds
    figures = {"champion": judge(registry.load(blobs, champion), sets, limits),
               "challenger": judge(result.checkpoint, sets, limits)} if sets else {}  # fmt: skip
    run.evaluation = figures | {"sets": {name: str(path) for name, path in sets.items()}}
    session.add(run)
    session.commit()
    session.refresh(run)
    if not RetrainStatus(run.status).open:  # cancelled by an operator, or failed by the sweeper, while it trained
        log.warning("retraining run %d is %s: no decision taken (%s)", run_id, run.status, run.decision)
        return run
    return _decide(session, config, run, champion.version, challenger, figures, blobs)


def _decide(
    session: Session,
    config: Settings,
    run: RetrainRun,
    champion: str,
    challenger_row: ModelVersion,
    figures: dict[str, Any],
    blobs: BlobStore,
) -> RetrainRun:
    from core.serving import prepare_for_serving
    from ml.challenge import decide

    challenger = challenger_row.version
    if not figures or not figures["challenger"].get("holdout", {}).get("photos"):
        finish_run(session, run, RetrainStatus.KEPT, NO_HOLDOUT)  # feedback alone never promotes
        return run
    decision = decide(figures["champion"], figures["challenger"], config.PROMOTION_MIN_GAIN,
                      config.PROMOTION_MAX_CLASS_DROP)  # fmt: skip
    if not decision.promote:
        finish_run(session, run, RetrainStatus.KEPT, decision.reason)
    elif registry.alias_version(session, ModelAliasName.CHAMPION) != champion:
        finish_run(session, run, RetrainStatus.KEPT, f"{decision.reason}; but the champion changed while training")
    elif not switch_on(session, SwitchName.AUTO_PROMOTION):
        finish_run(session, run, RetrainStatus.KEPT, f"{decision.reason}; automatic promotion is paused")
    else:
        prepare_for_serving(config, blobs, challenger_row)  # the workers switch to a build that is ready
        registry.promote(session, challenger, f"retraining run {run.id}", decision.reason)
        finish_run(session, run, RetrainStatus.PROMOTED, decision.reason)
    log.warning("retraining run %s: %s, %s", run.id, run.status, run.decision)
    return run

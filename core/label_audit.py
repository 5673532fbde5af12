"""`mhogo review audit-labels`: the training photos whose label is probably wrong, into the review queue.

The photos are those whose label, by the one rule (core.labels), is a class and comes from the curated set or an
agronomist: what a retraining learns from. The champion embeds each one (its test-time views averaged, as it serves);
ml.label_audit finds the labels its out-of-fold probabilities find unlikely; each such photo joins the queue with
the reason `probably_mislabelled`, which says what the label is and what the features suggest instead.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlmodel import Session

from core import registry
from core.blobs import BlobStore
from core.config import Settings
from core.labels import LabelledPhoto, decisions
from core.review import WEIGHTS, Reason, add_reasons
from schemas.labels import LABELS
from schemas.tables import LabelSource

CLASSES = [label.value for label in LABELS]
MIN_PER_CLASS = 2  # a class with fewer photos cannot be held out and still learned


@dataclass
class Audit:
    checked: int = 0
    flagged: list[str] = field(default_factory=list)  # photo sha256s put in the queue


def training_photos(session: Session, config: Settings, blobs: BlobStore) -> list[LabelledPhoto]:
    return [photo for photo in decisions(session, config.FARMERS_TO_AGREE)
            if photo.decision.label in CLASSES and photo.blob_key and blobs.exists(photo.blob_key)
            and photo.decision.source in (LabelSource.CURATED, LabelSource.AGRONOMIST)]  # fmt: skip


def audit_labels(session: Session, config: Settings, blobs: BlobStore, folds: int = 5) -> Audit:
    from ml.augment import AugmentConfig
    from ml.data import Sample
    from ml.gatefit import gate_data
    from ml.label_audit import label_issues

    photos = training_photos(session, config, blobs)
    labels = np.array([CLASSES.index(str(photo.decision.label)) for photo in photos], dtype=np.int64)
    present = np.bincount(labels, minlength=len(CLASSES)) if len(labels) else np.zeros(len(CLASSES))
    if len(photos) < folds * 2 or (present[present > 0] < MIN_PER_CLASS).any():
        return Audit(checked=len(photos))
    champion = registry.load(blobs, registry.ensure_champion(session, blobs, config.model_path))
    with tempfile.TemporaryDirectory(prefix="mhogo-audit-") as folder:
        samples = []
        for i, photo in enumerate(photos):
            path = Path(folder) / f"{i}{Path(str(photo.blob_key)).suffix}"
            path.write_bytes(blobs.get(str(photo.blob_key)))
            samples.append(Sample(path, int(labels[i])))
        data = gate_data(champion, samples, AugmentConfig(), views=0)
    served = data.served.bool()
    features = data.embedding[served][data.photo[served].argsort()]
    audit = Audit(checked=len(photos))
    for issue in label_issues(features, labels, len(CLASSES), folds):
        photo = photos[issue.index]
        detail = (f"Labelled {CLASSES[issue.given].upper()} for training ({photo.decision.source}); a model that "
                  f"never saw this label says {CLASSES[issue.suggested].upper()} ({issue.suggested_probability:.2f}), "
                  f"{CLASSES[issue.given].upper()} only {issue.self_confidence:.2f}.")  # fmt: skip
        reason = Reason(
            "probably_mislabelled",
            detail,
            WEIGHTS["probably_mislabelled"],
            "Its training label looks unlikely to a model that never saw it.",
        )
        add_reasons(session, config, photo.photo_sha256, [reason], str(photo.blob_key), photo.job_id)
        session.flush()
        audit.flagged.append(photo.photo_sha256)
    session.commit()
    return audit

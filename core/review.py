"""The agronomists' review queue: which photos they label first, and why; handing items out; taking answers.

Which photos come first is the point, so the order is a ranked, explained choice. Each photo in the queue carries its
reasons, each with a sentence an agronomist reads, and its priority is the weight of its most telling reason (plus
EXTRA_REASON for each other one):

    farmer_disagreed       100   a farmer said the model was wrong: the label settles a dispute, and corrects the
                                 model if the farmer was right
    probably_mislabelled    80   a training photo whose label cleanlab finds unlikely, from out-of-fold
                                 probabilities (`mhogo review audit-labels`): a wrong training label teaches wrong
    unsure                60-75  the model's top two classes were closer than REVIEW_UNSURE_MARGIN (the closer, the
                                 higher): the photos at its decision boundary teach it most
    gate_borderline         50   the leaf gate's score was within REVIEW_GATE_BAND of its threshold: nearly turned
                                 away, or nearly let through
    drift                   40   three or more image statistics outside the middle 80 % of the training photos'
    audit                   10   a confident answer drawn at random (REVIEW_AUDIT_SHARE, by the photo's hash): an
                                 honest sample of how often the model is wrong when it is sure

`refresh` adds photos from finished jobs and farmers' disagreements since its last pass (watermarks in
`review_marks`), a bounded batch at a time, one item per photo (by content hash; a later reason for the same photo
joins its item). A share of items (REVIEW_DOUBLE_SHARE, by hash) needs two agronomists' labels, given
independently; when they differ, a third agronomist decides (adjudication, handed out first). An item with one label
to go is leased to the agronomist it was handed to for REVIEW_LEASE_S, so two are not given the same photo at once.
Labels go into the label history (core.labels); an agronomist's undo retracts their latest label and reopens its
item.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_
from sqlmodel import Session, col, select

from core.blobs import BlobStore
from core.config import Settings
from core.labels import ANSWERS, retract
from ml.drift import DRIFT_STATS
from schemas.errors import ReviewRefused
from schemas.labels import LABELS
from schemas.reasons import RejectReason
from schemas.statuses import JobStatus
from schemas.tables import (
    Feedback,
    FeedbackSource,
    Job,
    LabelSource,
    ModelAlias,
    ModelAliasName,
    ModelVersion,
    PhotoLabel,
    ReviewItem,
    ReviewMark,
    ReviewSkip,
    ReviewStatus,
    User,
    utcnow,
)

WEIGHTS = {"farmer_disagreed": 100.0, "probably_mislabelled": 80.0, "unsure": 60.0, "gate_borderline": 50.0,
           "drift": 40.0, "audit": 10.0}  # fmt: skip
UNSURE_SPAN = 15.0  # an unsure photo's priority grows by up to this as its margin shrinks to nothing
EXTRA_REASON = 5.0
# Of the 7 image statistics, this many outside the middle 80 % of the training photos' (each is outside for a fifth
# of those photos themselves): three make about one training photo in seven look drifted, two would make two in five.
DRIFT_MIN_STATS = 3
BATCH = 2000  # jobs (and disagreements) read per refresh: the next pass takes the rest
CLASSES = {label.value for label in LABELS}


@dataclass(frozen=True)
class Reason:
    """Why a photo is in the queue: `before`, what the agronomist reads before answering, names nobody's answer
    (neither the model's nor a farmer's, so neither anchors theirs); `detail` says everything, once they answered."""

    code: str
    detail: str
    weight: float
    before: str = ""

    def record(self) -> dict[str, Any]:
        return {"code": self.code, "before": self.before or self.detail, "detail": self.detail,
                "weight": round(self.weight, 2)}  # fmt: skip


def share(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by the photo: the same photo is always in or out of a share."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 0x100000000


def priority(reasons: Sequence[dict[str, Any]]) -> float:
    weights = sorted((float(reason["weight"]) for reason in reasons), reverse=True)
    return weights[0] + EXTRA_REASON * (len(weights) - 1) if weights else 0.0


def margin(probabilities: dict[str, float] | None) -> float | None:
    top = sorted((probabilities or {}).values(), reverse=True)
    return top[0] - top[1] if len(top) > 1 else None


def _said(job: Job) -> str:
    if job.status == JobStatus.CLASSIFIED and job.label:
        return f"{job.label.upper()} ({(job.confidence or 0):.2f})"
    return f"not a cassava leaf ({job.reason or job.reason_code})"


@dataclass(frozen=True)
class Champion:
    """What the serving model knows that the queue reads: its leaf gate's threshold and its training photos' range."""

    threshold: float | None
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, row: ModelVersion | None) -> Champion:
        metrics = row.metrics if row is not None else {}
        stats = (metrics.get("input_reference") or {}).get("stats", {})
        ranges = {name: (figures["edges"][0], figures["edges"][-1]) for name, figures in stats.items()
                  if len(figures.get("edges", [])) >= 2}  # fmt: skip
        return cls(metrics.get("leaf_gate_threshold"), ranges)


def champion(session: Session) -> Champion:
    alias = session.get(ModelAlias, ModelAliasName.CHAMPION.value)
    return Champion.of(session.get(ModelVersion, alias.version) if alias else None)


def job_reasons(job: Job, model: Champion, config: Settings) -> list[Reason]:
    """Why a finished job's photo is worth an agronomist's look, if it is."""
    reasons = []
    gap = margin(job.probabilities) if job.status == JobStatus.CLASSIFIED else None
    if gap is not None and gap < config.REVIEW_UNSURE_MARGIN:
        top = sorted((job.probabilities or {}).items(), key=lambda kv: -kv[1])[:2]
        closeness = 1 - gap / config.REVIEW_UNSURE_MARGIN if config.REVIEW_UNSURE_MARGIN else 1.0
        reasons.append(Reason("unsure", f"The model was unsure: {top[0][0].upper()} {top[0][1]:.2f} against "
                                        f"{top[1][0].upper()} {top[1][1]:.2f}.",
                              WEIGHTS["unsure"] + UNSURE_SPAN * closeness,
                              f"The model was unsure between two classes (they differ by {gap:.2f})."))  # fmt: skip
    leaf = (job.input_stats or {}).get("leaf_probability")
    if leaf is not None and model.threshold is not None and abs(leaf - model.threshold) < config.REVIEW_GATE_BAND:
        nearly = "nearly turned away as not a cassava leaf" if leaf >= model.threshold else "nearly let through"
        reasons.append(Reason("gate_borderline", f"The leaf check {nearly}: score {leaf:.2f}, threshold "
                                                 f"{model.threshold:.2f}.", WEIGHTS["gate_borderline"]))  # fmt: skip
    stats = job.input_stats or {}
    outside = [name for name in DRIFT_STATS if name in model.ranges and name in stats
               and not model.ranges[name][0] <= float(stats[name]) <= model.ranges[name][1]]  # fmt: skip
    if len(outside) >= DRIFT_MIN_STATS:
        reasons.append(Reason("drift", "Unlike the training photos: " + ", ".join(
            f"{name.replace('_', ' ')} {float((job.input_stats or {})[name]):.2f}" for name in outside[:3])
            + " (outside their middle 80 %).", WEIGHTS["drift"]))  # fmt: skip
    if not reasons and job.status == JobStatus.CLASSIFIED and share(job.content_sha256, "audit") < \
            config.REVIEW_AUDIT_SHARE:  # fmt: skip
        reasons.append(Reason("audit", f"A confident answer, drawn at random to check the model: {_said(job)}.",
                              WEIGHTS["audit"], "A confident answer, drawn at random to check the model."))  # fmt: skip
    return reasons


def disagreement(job: Job, feedback: Feedback) -> Reason:
    return Reason("farmer_disagreed", f"A farmer said {feedback.label.upper()}; the model said {_said(job)}.",
                  WEIGHTS["farmer_disagreed"], "A farmer said the model's answer was wrong.")  # fmt: skip


def add_reasons(
    session: Session, config: Settings, sha: str, reasons: Sequence[Reason], blob_key: str, job_id: str | None
) -> bool:
    """The photo's item, made or with these reasons joined to it (once per code). True when something changed."""
    item = session.exec(select(ReviewItem).where(col(ReviewItem.photo_sha256) == sha)).first()
    if item is None:
        needed = 2 if share(sha, "double") < config.REVIEW_DOUBLE_SHARE else 1
        records = [reason.record() for reason in reasons]
        session.add(ReviewItem(photo_sha256=sha, job_id=job_id, blob_key=blob_key, reasons=records,
                               priority=priority(records), labels_needed=needed))  # fmt: skip
        return True
    known = {reason["code"] for reason in item.reasons}
    new = [reason.record() for reason in reasons if reason.code not in known]
    if not new:
        return False
    item.reasons = [*item.reasons, *new]
    item.priority, item.updated_at = priority(item.reasons), utcnow()
    session.add(item)
    return True


def _mark(session: Session, name: str) -> ReviewMark:
    return session.get(ReviewMark, name) or ReviewMark(name=name, at=datetime(2000, 1, 1, tzinfo=utcnow().tzinfo))


def refresh(session: Session, config: Settings) -> int:
    """Add what finished and what farmers disputed since the last pass; the number of items made or changed."""
    model = champion(session)
    changed = 0
    jobs_mark = _mark(session, "jobs")
    finished = session.exec(
        select(Job)
        .where(col(Job.finished_at) > jobs_mark.at, col(Job.photo_deleted_at).is_(None))
        .where(or_(col(Job.status) == JobStatus.CLASSIFIED,
                   and_(col(Job.status) == JobStatus.REJECTED, col(Job.reason_code) == RejectReason.NOT_CASSAVA_LEAF)))
        .order_by(col(Job.finished_at))
        .limit(BATCH)
    ).all()  # fmt: skip
    for job in finished:
        reasons = job_reasons(job, model, config)
        changed += bool(reasons) and add_reasons(session, config, job.content_sha256, reasons, job.blob_key, job.id)
        session.flush()
        jobs_mark.at = max(jobs_mark.at, job.finished_at or jobs_mark.at)
    feedback_mark = _mark(session, "feedback")
    disputes = session.exec(
        select(Feedback, Job)
        .join(Job, col(Job.id) == col(Feedback.job_id))
        .where(col(Feedback.created_at) > feedback_mark.at, col(Feedback.source) == FeedbackSource.FARMER)
        .order_by(col(Feedback.created_at))
        .limit(BATCH)
    ).all()
    for feedback, job in disputes:
        feedback_mark.at = max(feedback_mark.at, feedback.created_at)
        if feedback.agrees is False and job.photo_deleted_at is None:
            changed += add_reasons(session, config, job.content_sha256, [disagreement(job, feedback)], job.blob_key,
                                   job.id)  # fmt: skip
            session.flush()
    session.add(jobs_mark)
    session.add(feedback_mark)
    session.commit()
    return changed


# Handing items out --------------------------------------------------------------------------------------------------


def _labelled_by(user_id: int) -> Any:
    return exists().where(col(PhotoLabel.item_id) == col(ReviewItem.id), col(PhotoLabel.user_id) == user_id,
                          col(PhotoLabel.retracted_at).is_(None))  # fmt: skip


def _skipped_by(user_id: int) -> Any:
    return exists().where(col(ReviewSkip.item_id) == col(ReviewItem.id), col(ReviewSkip.user_id) == user_id)


def _for(user_id: int, now: datetime) -> Any:
    """Items this agronomist may be given: waiting, not theirs already, not held by someone else."""
    free = or_(col(ReviewItem.leased_by).is_(None), col(ReviewItem.leased_by) == user_id,
               col(ReviewItem.leased_until) < now)  # fmt: skip
    return and_(col(ReviewItem.status) != ReviewStatus.DONE, free, ~_labelled_by(user_id), ~_skipped_by(user_id))


@dataclass(frozen=True)
class Counts:
    left_for_you: int
    open: int
    adjudication: int


def counts(session: Session, user: User, now: datetime | None = None) -> Counts:
    now = now or utcnow()
    mine = session.exec(select(func.count()).select_from(ReviewItem).where(_for(user.id or 0, now))).one()
    by_status = dict(session.exec(select(ReviewItem.status, func.count()).group_by(col(ReviewItem.status))).all())
    return Counts(int(mine), int(by_status.get(ReviewStatus.OPEN, 0)), int(by_status.get(ReviewStatus.ADJUDICATION, 0)))


def next_item(
    session: Session, config: Settings, blobs: BlobStore, user: User, exclude: int | None = None
) -> ReviewItem | None:
    """The next item for this agronomist, leased to them when one label is all it needs; None when nothing is left.
    Adjudications first (of disagreements they did not take part in), then by priority."""
    now = utcnow()
    while True:
        statement = select(ReviewItem).where(_for(user.id or 0, now))
        if exclude is not None:
            statement = statement.where(col(ReviewItem.id) != exclude)
        adjudication_first = (col(ReviewItem.status) == ReviewStatus.ADJUDICATION).desc()
        item = session.exec(statement.order_by(adjudication_first, col(ReviewItem.priority).desc(),
                                               col(ReviewItem.id)).limit(1)).first()  # fmt: skip
        if item is None:
            return None
        if not blobs.exists(item.blob_key):  # retention deleted the photo before anyone labelled it
            item.status, item.done_at = ReviewStatus.DONE, now
            item.reasons = [*item.reasons, {"code": "photo_deleted", "detail": "The photo was deleted by retention.",
                                            "weight": 0}]  # fmt: skip
            session.add(item)
            session.commit()
            continue
        if _one_to_go(session, item):
            item.leased_by, item.leased_until = user.id, now + timedelta(seconds=config.REVIEW_LEASE_S)
            session.add(item)
            session.commit()
        return item


def live_labels(session: Session, item_id: int) -> list[PhotoLabel]:
    statement = select(PhotoLabel).where(col(PhotoLabel.item_id) == item_id, col(PhotoLabel.retracted_at).is_(None))
    return list(session.exec(statement.order_by(col(PhotoLabel.created_at), col(PhotoLabel.id))).all())


def _one_to_go(session: Session, item: ReviewItem) -> bool:
    return item.status == ReviewStatus.ADJUDICATION or len(live_labels(session, item.id or 0)) + 1 >= \
        item.labels_needed  # fmt: skip


# Answers ------------------------------------------------------------------------------------------------------------


def settle(item: ReviewItem, labels: Sequence[PhotoLabel]) -> None:
    """The item's status from its live labels: decided by an adjudication; by enough independent labels that agree;
    waiting for a third when they do not; open while labels are missing."""
    adjudications = [row for row in labels if row.adjudicates]
    independent = [row for row in labels if not row.adjudicates]
    said = {row.label for row in independent}
    if adjudications:
        item.status, item.final_label = ReviewStatus.DONE, adjudications[-1].label
    elif len(independent) >= item.labels_needed and len(said) == 1:
        item.status, item.final_label = ReviewStatus.DONE, independent[0].label
    elif len(independent) >= item.labels_needed:
        item.status, item.final_label = ReviewStatus.ADJUDICATION, None
    else:
        item.status, item.final_label = ReviewStatus.OPEN, None
    item.done_at = utcnow() if item.status == ReviewStatus.DONE else None
    item.updated_at = utcnow()


def answer(session: Session, item_id: int, user: User, label: str | None) -> tuple[ReviewItem, PhotoLabel | None]:
    """Take an agronomist's label (or, with None, their skip). The label row carries a feedback id when the photo
    has a job and the label is a class: the caller sends it as the agronomist's feedback event, after the commit."""
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise LookupError(f"no review item {item_id}")
    if label is not None and label not in ANSWERS:
        raise ValueError(f"{label!r} is not one of {', '.join(ANSWERS)}")
    labels = live_labels(session, item_id)
    if any(row.user_id == user.id for row in labels):
        raise ReviewRefused("You labelled this photo already: undo (z) to change your label.")
    if item.status == ReviewStatus.DONE:
        raise ReviewRefused("This photo is decided already.")
    item.leased_by = item.leased_until = None
    if label is None:
        if session.get(ReviewSkip, (item_id, user.id)) is None:
            session.add(ReviewSkip(item_id=item_id, user_id=user.id or 0))
        session.add(item)
        session.commit()
        return item, None
    row = PhotoLabel(photo_sha256=item.photo_sha256, job_id=item.job_id, blob_key=item.blob_key, item_id=item_id,
                     label=label, source=LabelSource.AGRONOMIST, user_id=user.id,
                     adjudicates=item.status == ReviewStatus.ADJUDICATION,
                     feedback_id=uuid.uuid4().hex if item.job_id and label in CLASSES else None)  # fmt: skip
    session.add(row)
    settle(item, [*labels, row])
    session.add(item)
    session.commit()
    session.refresh(row)
    return item, row


def undo(session: Session, config: Settings, user: User) -> PhotoLabel | None:
    """Retract this agronomist's latest label given through the queue and reopen its item for them (leased to them,
    so it is theirs to answer again). None when there is nothing to undo."""
    latest = session.exec(
        select(PhotoLabel)
        .where(col(PhotoLabel.user_id) == user.id, col(PhotoLabel.item_id).is_not(None))
        .where(col(PhotoLabel.retracted_at).is_(None))
        .order_by(col(PhotoLabel.created_at).desc(), col(PhotoLabel.id).desc())
    ).first()
    if latest is None or latest.id is None or not retract(session, latest.id, user.id or 0):
        return None
    item = session.get(ReviewItem, latest.item_id)
    assert item is not None
    settle(item, live_labels(session, item.id or 0))
    item.leased_by, item.leased_until = user.id, utcnow() + timedelta(seconds=config.REVIEW_LEASE_S)
    session.add(item)
    session.commit()
    return latest


def model_answer(session: Session, item: ReviewItem) -> dict[str, Any] | None:
    """What the model said of the photo, shown to the agronomist only once they have answered."""
    job = session.get(Job, item.job_id) if item.job_id else None
    if job is None or job.status not in (JobStatus.CLASSIFIED, JobStatus.REJECTED):
        return None
    label = job.label if job.status == JobStatus.CLASSIFIED else "not_cassava"
    return {"label": label, "probabilities": job.probabilities or {}, "model_version": job.model_version,
            "leaf_probability": (job.input_stats or {}).get("leaf_probability")}  # fmt: skip


def status_counts(session: Session) -> dict[str, Any]:
    """Items by status, and by reason of those still waiting: what `mhogo review status` prints."""
    items = session.exec(select(ReviewItem.status, func.count()).group_by(col(ReviewItem.status))).all()
    waiting = session.exec(select(ReviewItem).where(col(ReviewItem.status) != ReviewStatus.DONE)).all()
    reasons: dict[str, int] = {}
    for item in waiting:
        for reason in item.reasons:
            reasons[reason["code"]] = reasons.get(reason["code"], 0) + 1
    return {"items": {str(status): int(n) for status, n in items}, "waiting_by_reason": reasons}

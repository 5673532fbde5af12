"""Storage of feedback events, the per-model-version counts of confirmed and corrected predictions, and the labels
feedback gives photos (which of them are trusted enough to train and judge a model on).

Who gave a label is what the credential it came with says, never what the request says: a device's word is a
farmer's, and the row keeps the device; an agronomist's label keeps the agronomist. Farmers' labels are trusted when
`FARMERS_TO_AGREE` distinct devices agree (one phone saying it twice is still one farmer), and no device may be
behind more than `MAX_DEVICE_SHARE` of a figure a decision reads or of the photos a retraining run adds (`capped`,
`share_capped`).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count, islice
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, case, distinct, func, or_, union
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from core.config import Settings
from schemas.errors import IdempotencyConflict
from schemas.labels import Label
from schemas.statuses import JobStatus
from schemas.tables import (
    Feedback,
    FeedbackKey,
    FeedbackSource,
    Job,
    LabelSource,
    ModelFeedbackCount,
    PhotoLabel,
    User,
    utcnow,
)
from schemas.tasks import FeedbackEvent

Source = Literal["trusted", "agronomist", "farmer"]
PAGE = 500  # photos read at a time, newest feedback first


def record_feedback(session: Session, event: FeedbackEvent) -> bool:
    """Store the event and bump the counts in one transaction. False when this event was stored before."""
    if session.get(Feedback, event.event_id) is not None:
        return False
    job = session.get(Job, event.job_id)
    if job is None:
        raise LookupError(f"feedback for unknown job {event.job_id}")
    agrees = None if job.label is None else job.label == event.label
    device = event.device_id
    if event.source == FeedbackSource.FARMER and device is None:  # sent before events carried it: the job's own
        device = job.device_id
    session.add(
        Feedback(
            id=event.event_id,
            job_id=event.job_id,
            label=event.label,
            source=event.source,
            device_id=device,
            agronomist=event.agronomist,
            comment=event.comment,
            predicted_label=job.label,
            model_version=job.model_version,
            agrees=agrees,
            created_at=event.created_at,
        )
    )
    _add_to_history(session, job, event, device)
    if job.model_version is not None and agrees is not None:
        _bump(session, job.model_version, event.source.value, agrees)
    try:
        session.commit()
    except IntegrityError:  # a concurrent delivery of the same event stored it first; its counts stand
        session.rollback()
        return False
    return True


def _add_to_history(session: Session, job: Job, event: FeedbackEvent, device: int | None) -> None:
    """Feedback is a label too: it joins the photo's label history (core.labels). A label the review queue gave
    (core.review) went out as this event with its row already written under the same id: not added twice."""
    if session.exec(select(PhotoLabel.id).where(col(PhotoLabel.feedback_id) == event.event_id)).first() is not None:
        return
    user = None
    if event.agronomist is not None:
        user = session.exec(select(User.id).where(col(User.name) == event.agronomist)).first()
    source = LabelSource.AGRONOMIST if event.source == FeedbackSource.AGRONOMIST else LabelSource.FARMER
    session.add(PhotoLabel(photo_sha256=job.content_sha256, job_id=job.id, blob_key=job.blob_key, label=event.label,
                           source=source, user_id=user, device_id=device if source == LabelSource.FARMER else None,
                           feedback_id=event.event_id, created_at=event.created_at))  # fmt: skip


def _bump(session: Session, model_version: str, source: str, agrees: bool) -> None:
    """Upsert the counter row: the database adds, so concurrent feedback workers never lose an increment."""
    column = "confirmed" if agrees else "corrected"
    table = ModelFeedbackCount.__table__  # type: ignore[attr-defined]
    statement = _insert(session)(table).values(
        model_version=model_version, source=source, confirmed=int(agrees), corrected=int(not agrees)
    )
    statement = statement.on_conflict_do_update(
        index_elements=["model_version", "source"], set_={column: table.c[column] + 1}
    )
    session.execute(statement)


def feedback_event(payload: dict[str, Any]) -> FeedbackEvent:
    """The event a feedback message carries. One queued before events carried their device said "agronomist" in a
    device's request body, unchecked: it is the farmer's word its credential made it, as migration 0003 made the
    stored ones (record_feedback gives it the job's device)."""
    legacy = payload.get("device_id") is None and not payload.get("agronomist")
    if legacy and payload.get("source") == FeedbackSource.AGRONOMIST.value:
        payload = payload | {"source": FeedbackSource.FARMER.value}
    return FeedbackEvent.model_validate(payload)


def _insert(session: Session) -> Callable[[Any], Any]:
    """INSERT with ON CONFLICT, as the session's database spells it."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert


def agronomist_label(
    job_id: str, label: str, agronomist: str, comment: str | None = None, event_id: str | None = None
) -> FeedbackEvent:
    """An agronomist's label on a photo, as the event the events queue takes, with who gave it. Agronomists have no
    accounts yet (a later issue gives them theirs, and a workbench): until then this is the one way their labels
    come in, from code that knows who they are (`mhogo scenario retrain`), never from a device token."""
    return FeedbackEvent(event_id=event_id or uuid.uuid4().hex, job_id=job_id, label=Label(label).value,
                         source=FeedbackSource.AGRONOMIST, agronomist=agronomist, comment=comment,
                         created_at=utcnow())  # fmt: skip


def fingerprint(event: FeedbackEvent) -> str:
    """What a piece of feedback says, as a hash: two requests under one Idempotency-Key must say the same."""
    said = {"label": event.label, "source": event.source.value, "comment": event.comment}
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


def keyed_event_id(session: Session, job_id: str, key: str, said: str) -> tuple[str, bool]:
    """The event id of feedback on a job sent with an Idempotency-Key, and whether this is a replay. The key's first
    use binds it to what the feedback said (`said`, its fingerprint): the same again is the same event; something
    else under the same key is refused with IdempotencyConflict, instead of being dropped as a duplicate."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{job_id}/{key}").hex
    table = FeedbackKey.__table__  # type: ignore[attr-defined]
    row = {"job_id": job_id, "idempotency_key": key, "event_id": event_id, "fingerprint": said, "created_at": utcnow()}
    statement = _insert(session)(table).values(row).on_conflict_do_nothing().returning(table.c.event_id)
    inserted = session.execute(statement).first()
    session.commit()
    if inserted is not None:
        return event_id, False
    first = session.get(FeedbackKey, (job_id, key))  # used before, or by a request racing this one: the first decides
    assert first is not None
    if first.fingerprint != said:
        raise IdempotencyConflict("This Idempotency-Key was sent before with other feedback on this photo. Send "
                                  "new feedback with a new key; a retry must send the same feedback.")  # fmt: skip
    return first.event_id, True


@dataclass(frozen=True)
class LabelledPhoto:
    """A classified photo with the label feedback gives it: `label` is the trusted one (an agronomist's, or
    farmers' devices agreeing), `farmer_label` the latest farmer's word whether or not it is trusted."""

    job_id: str
    blob_key: str
    model_version: str | None
    predicted: str
    confidence: float
    label: str | None
    farmer_label: str | None
    agronomist_label: str | None
    labelled_at: datetime  # the latest feedback on it
    label_source: FeedbackSource | None = None  # whose word makes `label` trusted
    vouched_by: frozenset[int] = frozenset()  # the devices whose agreement makes `label` trusted (farmers' only)
    farmer_device: int | None = None  # the device of `farmer_label`

    def label_from(self, source: str) -> str | None:
        return {"trusted": self.label, "farmer": self.farmer_label, "agronomist": self.agronomist_label}[source]

    def devices_behind(self, source: str) -> frozenset[int]:
        """The devices whose word the label from `source` rests on: none for an agronomist's."""
        if source == "trusted":
            return self.vouched_by
        if source == "farmer" and self.farmer_device is not None:
            return frozenset({self.farmer_device})
        return frozenset()


@dataclass(frozen=True)
class Trusted:
    label: str
    source: FeedbackSource
    devices: frozenset[int]  # the farmers' devices that agreed; empty for an agronomist's label


def trusted(feedback: Sequence[Feedback], farmers_to_agree: int) -> Trusted | None:
    """An agronomist's latest label; else the farmers' label when that many devices agree and none says otherwise.
    Each device counts once, with its latest word: two posts from one phone are one farmer, not two agreeing."""
    ordered = sorted(feedback, key=lambda row: row.created_at)
    agronomists = [row.label for row in ordered if row.source == FeedbackSource.AGRONOMIST]
    if agronomists:
        return Trusted(agronomists[-1], FeedbackSource.AGRONOMIST, frozenset())
    words = {row.device_id: row.label for row in ordered if row.source == FeedbackSource.FARMER
             and row.device_id is not None}  # fmt: skip
    labels = set(words.values())
    if len(labels) == 1 and len(words) >= farmers_to_agree:
        return Trusted(labels.pop(), FeedbackSource.FARMER, frozenset(words))
    return None


def trusted_label(feedback: Sequence[Feedback], farmers_to_agree: int) -> str | None:
    found = trusted(feedback, farmers_to_agree)
    return found.label if found is not None else None


def _with_label_from(source: Source, farmers_to_agree: int) -> ColumnElement[bool]:
    """SQL for "this photo's feedback may give it a label from `source`" (the rest is decided in Python): a trusted
    one needs an agronomist's label or enough devices among the farmers."""
    agronomists = func.sum(case((col(Feedback.source) == FeedbackSource.AGRONOMIST.value, 1), else_=0))
    farmers = func.sum(case((col(Feedback.source) == FeedbackSource.FARMER.value, 1), else_=0))
    if source == "agronomist":
        return agronomists > 0
    if source == "farmer":
        return farmers > 0
    devices = func.count(distinct(case((col(Feedback.source) == FeedbackSource.FARMER.value,
                                        col(Feedback.device_id)))))  # fmt: skip
    return or_(agronomists > 0, devices >= farmers_to_agree)


def iter_labelled(
    session: Session,
    farmers_to_agree: int,
    model_version: str | None = None,
    since: datetime | None = None,
    source: Source | None = None,
) -> Iterator[LabelledPhoto]:
    """Classified photos with feedback, newest feedback first, read a page at a time: of one model version, with
    feedback since a time (only that feedback counts), and that may have a label from `source`."""
    latest = func.max(col(Feedback.created_at))
    pages = (
        select(col(Feedback.job_id))
        .join(Job, col(Feedback.job_id) == col(Job.id))
        .where(col(Job.status) == JobStatus.CLASSIFIED.value)
        .group_by(col(Feedback.job_id))
        .order_by(latest.desc(), col(Feedback.job_id))
    )
    if model_version is not None:
        pages = pages.where(col(Job.model_version) == model_version)
    if since is not None:
        pages = pages.where(col(Feedback.created_at) >= since)
    if source is not None:
        pages = pages.having(_with_label_from(source, farmers_to_agree))
    seen: set[str] = set()
    for offset in count(0, PAGE):
        ids = list(session.exec(pages.offset(offset).limit(PAGE)).all())
        for photo in _photos(session, ids, farmers_to_agree, since):
            if photo.job_id not in seen:  # feedback that arrived meanwhile moves a photo up into a later page
                seen.add(photo.job_id)
                yield photo
        if len(ids) < PAGE:
            return


def _photos(session: Session, ids: list[str], farmers_to_agree: int, since: datetime | None) -> list[LabelledPhoto]:
    if not ids:
        return []
    statement = select(Feedback, Job).join(Job, col(Feedback.job_id) == col(Job.id)).where(col(Job.id).in_(ids))
    if since is not None:
        statement = statement.where(col(Feedback.created_at) >= since)
    by_job: dict[str, list[Feedback]] = {}
    jobs: dict[str, Job] = {}
    for feedback, job in session.exec(statement).all():
        by_job.setdefault(job.id, []).append(feedback)
        jobs[job.id] = job
    return [_photo(jobs[job_id], by_job[job_id], farmers_to_agree) for job_id in ids if job_id in by_job]


def _photo(job: Job, rows: list[Feedback], farmers_to_agree: int) -> LabelledPhoto:
    farmer = [row for row in rows if row.source == FeedbackSource.FARMER]
    agronomist = [row for row in rows if row.source == FeedbackSource.AGRONOMIST]
    latest_farmer = max(farmer, key=lambda row: row.created_at) if farmer else None
    trust = trusted(rows, farmers_to_agree)
    return LabelledPhoto(
        job_id=job.id,
        blob_key=job.blob_key,
        model_version=job.model_version,
        predicted=job.label or "",
        confidence=job.confidence or 0.0,
        label=trust.label if trust else None,
        farmer_label=latest_farmer.label if latest_farmer else None,
        agronomist_label=max(agronomist, key=lambda row: row.created_at).label if agronomist else None,
        labelled_at=max(row.created_at for row in rows),
        label_source=trust.source if trust else None,
        vouched_by=trust.devices if trust else frozenset(),
        farmer_device=latest_farmer.device_id if latest_farmer else None,
    )


def trusted_jobs(farmers_to_agree: int) -> SelectOfScalar[str]:
    """The ids of the jobs `trusted` gives a label, as one query (retention keeps their photos): an agronomist spoke,
    or at least `farmers_to_agree` devices did and the latest word of each is the same label."""
    source = col(Feedback.source)
    newest_first = func.row_number().over(partition_by=(col(Feedback.job_id), col(Feedback.device_id)),
                                          order_by=col(Feedback.created_at).desc())  # fmt: skip
    latest = (
        select(col(Feedback.job_id).label("job_id"), col(Feedback.label).label("label"), newest_first.label("rank"))
        .where(source == FeedbackSource.FARMER.value, col(Feedback.device_id).is_not(None))
        .subquery()
    )
    agreeing = (
        select(latest.c.job_id)
        .where(latest.c.rank == 1)
        .group_by(latest.c.job_id)
        .having((func.count() >= farmers_to_agree) & (func.count(distinct(latest.c.label)) == 1))
    )
    agronomists = select(col(Feedback.job_id)).where(source == FeedbackSource.AGRONOMIST.value)
    either = union(agronomists, agreeing).subquery()
    return select(either.c.job_id)


def labelled_photos(
    session: Session,
    farmers_to_agree: int,
    model_version: str | None = None,
    since: datetime | None = None,
    last: int | None = None,
) -> list[LabelledPhoto]:
    """Classified photos with feedback, newest feedback first; of one model version, labelled since a time, or the
    `last` N photos."""
    photos = iter_labelled(session, farmers_to_agree, model_version, since)
    return list(islice(photos, last) if last is not None else photos)


def device_limit(share: float, size: int) -> int:
    """The most labels one device may bring to a figure of `size` labels."""
    return math.floor(share * size + 1e-9)


def capped(photos: Iterable[LabelledPhoto], source: Source, limit: int) -> Iterator[LabelledPhoto]:
    """The photos with a label from `source`, in order, less those that would put one device behind more than
    `limit` of them. Agronomists' labels rest on no device and are never left out."""
    counts: Counter[int] = Counter()
    for photo in photos:
        if photo.label_from(source) is None:
            continue
        devices = photo.devices_behind(source)
        if any(counts[device] >= limit for device in devices):
            continue
        counts.update(devices)
        yield photo


def recent_labels(
    session: Session, config: Settings, source: Source, n: int, model_version: str | None = None
) -> list[LabelledPhoto]:
    """The last `n` photos with a label from `source`, no device behind more than MAX_DEVICE_SHARE of them: what
    the accuracy rule and the dashboard's feedback figures read."""
    photos = iter_labelled(session, config.FARMERS_TO_AGREE, model_version, source=source)
    return list(islice(capped(photos, source, device_limit(config.MAX_DEVICE_SHARE, n)), n))


def share_capped(photos: Sequence[LabelledPhoto], share: float) -> list[LabelledPhoto]:
    """As many of `photos` (trusted labels, in order of preference) as can be kept with no device behind more than
    `share` of those kept: the largest per-device limit for which that holds, each device's photos past it left out.
    With one device alone behind farmers' labels and a share below 1, none of its photos is kept."""
    for limit in range(device_limit(share, len(photos)), 0, -1):
        kept = list(capped(photos, "trusted", limit))
        behind = Counter(device for photo in kept for device in photo.vouched_by)
        if max(behind.values(), default=0) <= share * len(kept) + 1e-9:
            return kept
    return list(capped(photos, "trusted", 0))

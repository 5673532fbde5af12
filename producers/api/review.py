"""The review queue's API, which the workbench page (/review) is built on; agronomists only (operators read the
agreement). The model's answer on a photo is not in what `next` returns: it comes back with the agronomist's own
answer, so it cannot anchor it."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, model_validator
from sqlmodel import Session

from core import review
from core.agreement import agreement
from producers.api.auth import PERSON_ERRORS, AgronomistDep, OperatorUserDep
from producers.api.deps import ServicesDep, SessionDep
from schemas.errors import BrokerUnavailable
from schemas.tables import FeedbackSource, ReviewItem, ReviewStatus, User, utcnow
from schemas.tasks import FeedbackEvent

log = logging.getLogger(__name__)
router = APIRouter(tags=["review"])

Answer = Literal["cbb", "cbsd", "cgm", "cmd", "healthy", "not_cassava", "unusable"]
NO_SUCH_ITEM = "No such review item."


class ReviewAnswer(BaseModel):
    """One agronomist's answer on one photo: a label, or a skip."""

    model_config = ConfigDict(extra="forbid")
    label: Answer | None = None
    skip: bool = False

    @model_validator(mode="after")
    def one_of(self) -> ReviewAnswer:
        if (self.label is None) == (not self.skip):
            raise ValueError('send exactly one of {"label": ...} or {"skip": true}')
        return self


def view(session: Session, item: ReviewItem, user: User) -> dict[str, Any]:
    counts = review.counts(session, user)
    return {"item_id": item.id, "job_id": item.job_id, "photo_url": f"/v1/review/{item.id}/photo",
            "reasons": [{"code": r["code"], "detail": r.get("before", r["detail"])} for r in item.reasons],
            "adjudication": item.status == ReviewStatus.ADJUDICATION,
            "counts": vars(counts)}  # fmt: skip


def _item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_SUCH_ITEM)
    return item


@router.get("/v1/review/next", responses=PERSON_ERRORS | {204: {"description": "Nothing is left for this agronomist."}})
def next_item(
    services: ServicesDep, session: SessionDep, user: AgronomistDep,
    exclude: Annotated[int | None, Query(ge=1, description="An item the page holds already (prefetch)")] = None,
) -> Any:  # fmt: skip
    """The next photo for this agronomist, with why it is in the queue; 204 when nothing is left."""
    item = review.next_item(session, services.settings, services.blobs, user, exclude)
    if item is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return view(session, item, user)


@router.get("/v1/review/agreement", responses=PERSON_ERRORS)
def review_agreement(session: SessionDep, _: OperatorUserDep) -> dict[str, Any]:
    """Cohen's kappa between agronomists: overall, per agronomist and per class."""
    return agreement(session)


@router.get("/v1/review/{item_id}", responses=PERSON_ERRORS)
def item_view(session: SessionDep, user: AgronomistDep, item_id: int) -> dict[str, Any]:
    """One item as `next` shows it (the page asks for the item an undo reopened)."""
    return view(session, _item(session, item_id), user)


@router.get("/v1/review/{item_id}/photo", response_class=Response, responses=PERSON_ERRORS)
def item_photo(services: ServicesDep, session: SessionDep, _: AgronomistDep, item_id: int) -> Response:
    item = _item(session, item_id)
    if not services.blobs.exists(item.blob_key):
        raise HTTPException(status.HTTP_410_GONE, "The photo was deleted by retention.")
    media = "image/png" if item.blob_key.endswith(".png") else "image/jpeg"
    return Response(services.blobs.get(item.blob_key), media_type=media,
                    headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


@router.post("/v1/review/undo", responses=PERSON_ERRORS)
def undo(services: ServicesDep, session: SessionDep, user: AgronomistDep) -> dict[str, Any]:
    """Retract this agronomist's latest label; its item is theirs to answer again."""
    label = review.undo(session, services.settings, user)
    if label is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Nothing to undo.")
    return {"item_id": label.item_id, "label_id": label.id}


@router.post("/v1/review/{item_id}", responses=PERSON_ERRORS)
def answer(
    services: ServicesDep, session: SessionDep, user: AgronomistDep, item_id: int, body: ReviewAnswer
) -> dict[str, Any]:
    """Label the photo (or skip it). The answer shows the model's own answer on it, now that it cannot anchor."""
    try:
        item, label = review.answer(session, item_id, user, body.label)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_SUCH_ITEM) from exc
    if label is not None and label.feedback_id is not None and item.job_id is not None:
        send_feedback(services.publisher, item.job_id, label.label, label.feedback_id, user)
    return {"item_id": item.id, "label_id": label.id if label else None, "status": str(item.status),
            "final_label": item.final_label, "model": review.model_answer(session, item),
            "reasons": [{"code": r["code"], "detail": r["detail"]} for r in item.reasons],
            "counts": vars(review.counts(session, user))}  # fmt: skip


def send_feedback(publisher: Any, job_id: str, label: str, event_id: str, user: User) -> None:
    """The label is also the agronomist's feedback on the model's answer, for the monitoring's accuracy figures. The
    label is stored already; a broker that is away loses only this count (logged)."""
    event = FeedbackEvent(event_id=event_id, job_id=job_id, label=label, source=FeedbackSource.AGRONOMIST,
                          agronomist=user.name, created_at=utcnow())  # fmt: skip
    try:
        publisher.publish_feedback(event)
    except BrokerUnavailable:
        log.warning("review label %s stored, but its feedback event could not be sent", event_id)

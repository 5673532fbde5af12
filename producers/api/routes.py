"""Routes of the v1 API. They parse and authorise at the edge and call storage functions for the rest."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from core import jobs
from core.db import close_session, local_folder, ping
from core.feedback import fingerprint, keyed_event_id
from core.files import free_bytes
from core.logs import bind_job
from producers.api.backlog import retry_after_s
from producers.api.deps import (
    Credentials,
    FeedbackDevice,
    PollingDevice,
    ReportingDevice,
    Services,
    ServicesDep,
    SessionDep,
    authenticate,
    client_address,
    limit_rate,
)
from producers.intake import Arrival, check_declared_type, check_idempotency_key
from schemas.api import (
    Diagnosis,
    FeedbackAccepted,
    FeedbackIn,
    Health,
    JobPage,
    JobView,
    PhotoAccepted,
    Problem,
    Rejection,
)
from schemas.catalogue import text
from schemas.errors import BrokerUnavailable, UploadTooLarge
from schemas.labels import Label
from schemas.reasons import RejectReason
from schemas.statuses import JobStatus
from schemas.tables import Device, FeedbackSource, Job, utcnow
from schemas.tasks import MAX_CLIENT_EVENTS, MAX_EVENTS_BODY_BYTES, ClientEventIn, ClientEvents, FeedbackEvent

log = logging.getLogger(__name__)
router = APIRouter()

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503, 507)
}
FEEDBACK_ERRORS = ERRORS | {403: {"model": Problem}}
FEEDBACK_KEY = "Optional: the same key on retries of the same feedback (one event); with other feedback, 422"
NOT_AN_AGRONOMIST = (
    "A device's feedback is a farmer's word: agronomists' labels come from agronomists' own accounts, not from a "
    "device token. Send the label without 'source' (or with 'farmer')."
)
PHOTO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"photo": {"type": "string", "format": "binary"}}}
            },
        },
    }
}


async def read_photo(request: Request, max_bytes: int) -> tuple[bytes, str | None]:
    """The photo from the raw body or from multipart field `photo`, with its declared media type."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=5) as form:
            photo = form.get("photo")
            if not isinstance(photo, UploadFile):
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT, "Put the photo in the multipart field 'photo'."
                )
            data = await photo.read()
            # A part that declares no type (RFC 7578 allows it; some phone HTTP libraries do it) is bytes of an
            # unknown type, as application/octet-stream: validation then tells a JPEG or PNG from anything else.
            declared = photo.content_type or "application/octet-stream"
    else:
        data = await request.body()
        declared = content_type
    if len(data) > max_bytes:
        raise UploadTooLarge(f"The photo is larger than {max_bytes // (1024 * 1024)} MB. Send a smaller photo.")
    if not data:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "The request carried no photo. Send the photo's bytes as the body, or in the multipart field 'photo'.",
        )
    return data, declared


@router.post(
    "/v1/photos",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PhotoAccepted,
    responses=ERRORS,
    openapi_extra=PHOTO_BODY,
    summary="Upload a photo of a cassava leaf for diagnosis",
)
async def upload_photo(
    request: Request,
    services: ServicesDep,
    credentials: Credentials,
    idempotency_key: Annotated[str | None, Header(description="Unique per photo, the same on every retry")] = None,
) -> JSONResponse:
    # One hop to a worker thread (the database and Redis block) admits the upload before its body is read; then the
    # process's intake writer accepts it together with the uploads that arrive meanwhile. Dependencies would cost a
    # hop each. No database connection is held while the body arrives: on 2G that takes seconds.
    key = check_idempotency_key(idempotency_key)
    device = await run_in_threadpool(admit_upload, services, credentials, key, client_address(request))
    assert device.id is not None
    with services.in_flight.hold(device.id):  # 429 past MHOGO_MAX_UPLOADS_IN_FLIGHT: bodies in memory are bounded
        data, declared = await read_photo(request, services.settings.MAX_UPLOAD_BYTES)
        check_declared_type(declared)
        accepted = await asyncio.wrap_future(services.intake.submit(Arrival(device.id, key, data)))
    with bind_job(accepted.job_id):  # the first line of the job's story; the workers' lines carry the same id
        log.info("photo accepted", extra={"replayed": accepted.replayed, "size_bytes": len(data)})
    status_url = f"{services.settings.public_url}/v1/jobs/{accepted.job_id}"
    headers = {"Location": status_url} | ({"Idempotent-Replayed": "true"} if accepted.replayed else {})
    body = {"job_id": accepted.job_id, "status": str(accepted.status), "status_url": status_url}
    # The answer as PhotoAccepted documents it, sent as it is: FastAPI's validation of the return value costs more.
    return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED, headers=headers)


def admit_upload(services: Services, credentials: HTTPAuthorizationCredentials | None, key: str, client: str) -> Device:
    """The device (401), within its rate (429), while the queues have room (503), or the answer that refuses it."""
    session = Session(services.engine, expire_on_commit=False)
    try:
        device = authenticate(services, session, credentials, client)
        limit_rate(services, device, "upload")
        refuse_when_backlogged(services, device, key, session)
        return device
    finally:
        close_session(session)


def refuse_when_backlogged(services: Services, device: Device, key: str, session: Session) -> None:
    """503 with Retry-After when the photo queues are over their limit, unless this key was accepted before (its
    replay is answered as always)."""
    depth = services.backlog.depth() if services.backlog is not None else None
    limit = services.settings.MAX_QUEUE_DEPTH
    if depth is None or depth <= limit or (device.id is not None and jobs.find_job(session, device.id, key)):
        return
    wait = retry_after_s(depth, limit, services.settings.QUEUE_DRAIN_PER_S)
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "mhogo is busy. Keep the photo and send it again later.",
                        headers={"Retry-After": str(wait)})  # fmt: skip


def job_view(job: Job) -> JobView:
    view = JobView(
        job_id=job.id,
        idempotency_key=job.idempotency_key,
        status=job.status,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        timings_ms=job.timings_ms or {},
    )
    if job.finished_at is not None:  # the whole wait as the phone sees it, queues included
        view.timings_ms["end_to_end"] = round((job.finished_at - job.created_at).total_seconds() * 1000, 1)
    if job.status == JobStatus.CLASSIFIED and job.label is not None:
        label = Label(job.label)
        view.result = Diagnosis(
            label_id=label.id,
            label=label,
            name=label.info.name,
            confidence=job.confidence or 0.0,
            probabilities=job.probabilities or {},
            model_version=job.model_version or "unknown",
            advice=label.info.advice,
        )
    elif job.status == JobStatus.REJECTED and job.reason_code is not None:
        reason = RejectReason(job.reason_code)
        view.rejection = Rejection(reason=reason, message=reason.message)
    elif job.status == JobStatus.FAILED:
        view.error = text("job.failed")
    return view


def own_job(session: Session, device: Device, job_id: str) -> Job:
    job = jobs.get_job(session, job_id, device.id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such job for this device.")
    return job


@router.get("/v1/jobs", response_model=JobPage, responses=ERRORS, summary="This phone's photos, newest first")
def list_jobs(
    session: SessionDep,
    device: PollingDevice,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs in a page")] = 20,
    before: Annotated[
        str | None, Query(pattern="^[A-Za-z0-9_-]{1,200}$", description="The `next` of the page before")
    ] = None,
) -> JobPage:
    """The device's own jobs (a reinstalled app gets its history back), a page at a time: `next` names the page
    after this one, null on the last."""
    assert device.id is not None
    cursor = jobs.JobCursor.decode(before) if before is not None else None
    page, after = jobs.device_jobs(session, device.id, limit, cursor)
    return JobPage(jobs=[job_view(job) for job in page], next=after.encode() if after is not None else None)


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=ERRORS, summary="Status and diagnosis of a photo")
def read_job(job_id: str, session: SessionDep, device: PollingDevice) -> JobView:
    return job_view(own_job(session, device, job_id))


@router.post(
    "/v1/jobs/{job_id}/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FeedbackAccepted,
    responses=FEEDBACK_ERRORS,
    summary="Say what the leaf really has",
)
def send_feedback(
    job_id: str,
    body: FeedbackIn,
    session: SessionDep,
    device: FeedbackDevice,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(description=FEEDBACK_KEY)] = None,
) -> FeedbackAccepted:
    # Who speaks is the credential's to say: a device token is a farmer's phone, whatever the body claims.
    if body.source == FeedbackSource.AGRONOMIST:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_AN_AGRONOMIST)
    job = own_job(session, device, job_id)
    if not JobStatus(job.status).terminal:
        raise HTTPException(status.HTTP_409_CONFLICT, "The diagnosis is not ready yet. Send feedback once it is.")
    assert device.id is not None
    event = FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job.id, label=body.label.value,
                          source=FeedbackSource.FARMER, device_id=device.id, comment=body.comment,
                          created_at=utcnow())  # fmt: skip
    if idempotency_key:  # optional here: none (or empty) makes every request its own event
        key = check_idempotency_key(idempotency_key)
        event_id, replayed = keyed_event_id(session, job.id, key, fingerprint(event))
        event = event.model_copy(update={"event_id": event_id})
        if replayed:  # sent again: the worker stores the event once, whichever copy arrives first
            response.headers["Idempotent-Replayed"] = "true"
    try:
        services.publisher.publish_feedback(event)
    except BrokerUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Feedback cannot be taken right now. Try again later.",
            headers={"Retry-After": "30"},
        ) from exc
    return FeedbackAccepted(event_id=event.event_id)


@router.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
    summary=f"Report what happened on the phone (retries, offline answers, errors), up to {MAX_CLIENT_EVENTS} events "
    f"and {MAX_EVENTS_BODY_BYTES // 1024} KiB at once",
)
def report_events(
    events: list[ClientEventIn], session: SessionDep, device: ReportingDevice, services: ServicesDep
) -> dict[str, int]:
    if len(events) > MAX_CLIENT_EVENTS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"Send at most {MAX_CLIENT_EVENTS} events at once.")
    assert device.id is not None
    # An event speaks of one of the phone's own jobs, or of none: the batch is refused whole, so that a stored event's
    # job is always the reporting phone's and the phone learns of its mistake (stripped silently, it never would).
    named = {e.job_id for e in events if e.job_id is not None}
    own = jobs.own_job_ids(session, device.id, named)
    strangers = sorted(e.event_id for e in events if e.job_id is not None and e.job_id not in own)
    if strangers:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{len(strangers)} event(s) name a job that is "
                            f"not one of this phone's: {', '.join(strangers[:5])}. Send them without a job_id, or "
                            "with the job_id this phone's upload was given.")  # fmt: skip
    try:
        services.publisher.publish_client_events(ClientEvents(device_id=device.id, events=events))
    except BrokerUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Events cannot be taken right now. Try again later.",
                            headers={"Retry-After": "30"}) from exc  # fmt: skip
    return {"accepted": len(events)}


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}},
            summary="Redis, the database and free space")  # fmt: skip
def health(services: ServicesDep, response: Response) -> Health:
    """Anyone may ask (a load balancer does): the answer says what is down, never where (no host, port, path or
    error text of the machines behind, which the log keeps). Less free space than MHOGO_MIN_FREE_BYTES where photos
    (or SQLite's database) are written is down too: uploads would get 507."""
    checks = {"database": _check("database", lambda: ping(services.engine)),
              "redis": _check("redis", services.publisher.ping)}  # fmt: skip
    free: dict[str, int] = {}
    for name, folder in (("blob_store", services.blobs.root), ("database", local_folder(services.engine))):
        if folder is None:  # a database server: its disk is its own to watch
            continue
        try:
            free[name] = free_bytes(folder)
        except OSError as exc:
            log.warning("health check: free space of the %s unknown: %s", name, exc)
            checks[f"{name}_space"] = "unavailable"
            continue
        checks[f"{name}_space"] = _room(free[name], services.settings.MIN_FREE_BYTES)
    ok = all(value == "ok" for value in checks.values())
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if ok else "degraded", checks=checks, free_bytes=free)


def _room(free: int, minimum: int) -> str:
    if free >= minimum:
        return "ok"
    return f"low on space: {free // 2**20} MiB free, under the {minimum // 2**20} MiB needed"


def _check(name: str, probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # a health check reports every failure instead of raising it
        log.warning("health check: %s unavailable: %s: %s", name, type(exc).__name__, exc)
        return "unavailable"
    return "ok"

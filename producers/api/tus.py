"""Resumable uploads: the tus 1.0 protocol (core, creation, checksum, expiration and termination extensions) at
`/v1/uploads`, for photos larger than one request carries on a bad link. https://tus.io/protocols/resumable-upload

    POST   /v1/uploads        Upload-Length, Idempotency-Key      → 201, Location, Upload-Expires
    HEAD   /v1/uploads/{id}                                       → 200, Upload-Offset, Upload-Length
    PATCH  /v1/uploads/{id}   Upload-Offset, [Upload-Checksum]    → 204, Upload-Offset (460 on a checksum mismatch)
    DELETE /v1/uploads/{id}                                       → 204
    OPTIONS /v1/uploads                                           → 204, Tus-Version, Tus-Extension, Tus-Max-Size

Every request but OPTIONS carries `Tus-Resumable: 1.0.0` and the device token. A PATCH's body is written to the
blob store as it arrives, a bounded amount held in memory at a time. A body cut off in the middle is kept as far as
it came (tus 1.0: the server SHOULD store what it received), so a client on a link that drops every few KB moves on
with each attempt: HEAD says where to go on. One that carried Upload-Checksum is kept whole or not at all, since what
arrived of it cannot be checked. When the last byte is in, the photo is accepted exactly like `POST /v1/photos` with
the same Idempotency-Key, and the answer (and every later HEAD) carries `Mhogo-Job-Id` and `Mhogo-Job-Url`. A client
whose last PATCH answer was lost sees Upload-Offset = Upload-Length without a job in HEAD, and sends an empty PATCH
at that offset to finish. The upload's state is in the database and its bytes in the blob store (core.uploads), so
any API process can take any chunk.

A device holds at most MHOGO_MAX_OPEN_UPLOADS unfinished uploads declaring at most MHOGO_MAX_OPEN_UPLOAD_BYTES
together: a creation beyond either is 429 until it finishes or abandons (DELETE) one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from datetime import timedelta
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import uploads
from core.logs import bind_job
from producers.api.deps import PollingDevice, Services, ServicesDep, SessionDep, UploadingDevice, too_many
from producers.api.limits import header_count
from producers.api.routes import ERRORS, refuse_when_backlogged
from producers.intake import Arrival, check_declared_type, check_idempotency_key
from schemas.errors import BadInput, IdempotencyConflict, OffsetConflict
from schemas.tables import Device, Upload

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,checksum,expiration,termination"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
CHECKSUM_MISMATCH = 460  # tus checksum extension
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
PREFIX = "/v1/uploads"
WRITE_AT = 256 * 1024  # bytes of a PATCH body held in memory before they go to its part file
OPEN_UPLOADS_RETRY_S = 60  # a phone at its limit finishes or abandons an upload meanwhile

router = APIRouter(prefix=PREFIX, tags=["resumable uploads (tus 1.0)"], default_response_class=Response)  # no bodies


class TusResumableHeader:
    """ASGI middleware: every answer under /v1/uploads, errors from anywhere included, says `Tus-Resumable`, as the
    protocol asks (OPTIONS answers advertise the versions instead)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"tus-resumable", TUS_VERSION.encode())]
            await send(message)

        await self.app(scope, receive, send_with_header)


def require_tus(tus_resumable: Annotated[str | None, Header(description="Must be 1.0.0")] = None) -> None:
    if tus_resumable != TUS_VERSION:
        raise HTTPException(status.HTTP_412_PRECONDITION_FAILED, f"Send 'Tus-Resumable: {TUS_VERSION}'.",
                            headers={"Tus-Version": TUS_VERSION})  # fmt: skip


Tus = Depends(require_tus)
TUS_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    410: ERRORS[404],
    412: ERRORS[404],
    429: ERRORS[404],
    CHECKSUM_MISMATCH: ERRORS[404],
    507: ERRORS[404],  # the disk under the blob store is full: nothing kept
}


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata: filename ZmxvdXIuanBn,filetype aW1hZ2UvanBlZw==`: keys with base64 values (or none)."""
    pairs: dict[str, str] = {}
    for item in (header or "").split(","):
        if not item.strip():
            continue
        key, _, value = item.strip().partition(" ")
        try:
            pairs[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Upload-Metadata value of {key!r} is not base64 "
                                "of UTF-8 text.") from None  # fmt: skip
    return pairs


def upload_headers(upload: Upload, services: Services) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(upload.received),
        "Upload-Length": str(upload.length),
        "Upload-Expires": format_datetime(upload.expires_at, usegmt=True),
        "Cache-Control": "no-store",
    }
    if upload.job_id is not None:
        headers["Mhogo-Job-Id"] = upload.job_id
        headers["Mhogo-Job-Url"] = f"{services.settings.public_url}/v1/jobs/{upload.job_id}"
    return headers


def own_upload(session: Session, device: Device, upload_id: str) -> Upload:
    assert device.id is not None
    upload = uploads.find_upload(session, upload_id, device.id)
    if upload is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such upload for this device. Start a new one.")
    if uploads.expired(upload):
        raise HTTPException(status.HTTP_410_GONE, "This upload expired. Start a new one with the same key.")
    return upload


@router.options("", status_code=status.HTTP_204_NO_CONTENT, summary="What this tus server supports")
def tus_options(services: ServicesDep) -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(services.settings.MAX_UPLOAD_BYTES),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
    })  # fmt: skip


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=TUS_ERRORS, dependencies=[Tus],
    summary="Start a resumable upload of one photo (tus creation)",
)  # fmt: skip
def create_upload(
    services: ServicesDep,
    session: SessionDep,
    device: UploadingDevice,
    upload_length: Annotated[str | None, Header(description="The photo's size in bytes")] = None,
    upload_metadata: Annotated[str | None, Header(description="tus metadata: filename, filetype")] = None,
    upload_defer_length: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: Annotated[str | None, Header(description="Unique per photo, the same on every retry")] = None,
) -> Response:
    key = check_idempotency_key(idempotency_key)
    length = header_count(upload_length)
    if upload_defer_length is not None or length is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Send 'Upload-Length': the photo's size in bytes.")
    limit = services.settings.MAX_UPLOAD_BYTES
    if length > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"The photo is larger than {limit // (1024 * 1024)} MB. Send a smaller photo.")  # fmt: skip
    if length == 0:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "An empty file is not a photo.")
    meta = parse_metadata(upload_metadata)
    if "filetype" in meta:
        check_declared_type(meta["filetype"])
    refuse_when_backlogged(services, device, key, session)
    refuse_when_too_many_open(services, session, device, key, length)
    assert device.id is not None
    lifetime = timedelta(seconds=services.settings.UPLOAD_EXPIRE_S)
    upload, created = uploads.create_upload(session, device.id, key, length, meta, lifetime)
    if upload.length != length:
        raise HTTPException(status.HTTP_409_CONFLICT, "This Idempotency-Key was already used for an upload of "
                            "another size. Use a new key for each new photo.")  # fmt: skip
    headers = {
        # Relative (RFC 9110 allows it; tus clients resolve it against the creation URL): the upload goes on at the
        # address the phone reached, whatever MHOGO_PUBLIC_URL says, through a proxy or another name of the host.
        "Location": f"{PREFIX}/{upload.id}",
        "Upload-Expires": format_datetime(upload.expires_at, usegmt=True),
    }
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return Response(status_code=status.HTTP_201_CREATED, headers=headers)


def refuse_when_too_many_open(services: Services, session: Session, device: Device, key: str, length: int) -> None:
    """429 when the device already has as many unfinished uploads as it may, or this one would take their declared
    bytes past the limit. A key that started an upload (or whose photo was accepted) before finds it as always."""
    assert device.id is not None
    if uploads.known_key(session, device.id, key):
        return
    count, declared = uploads.open_uploads(session, device.id)
    most, most_bytes = services.settings.MAX_OPEN_UPLOADS, services.settings.max_open_upload_bytes
    if count < most and declared + length <= most_bytes:
        return
    raise too_many(OPEN_UPLOADS_RETRY_S, f"This phone has {count} unfinished uploads of {declared} bytes; at most "
                   f"{most}, of {most_bytes} bytes together, may be open. Finish them, or abandon those you will not "
                   "finish (DELETE), before starting another.")  # fmt: skip


@router.head("/{upload_id}", responses=TUS_ERRORS, dependencies=[Tus], summary="How much of the upload has arrived")
def upload_offset(upload_id: str, services: ServicesDep, session: SessionDep, device: PollingDevice) -> Response:
    upload = own_upload(session, device, upload_id)
    return Response(status_code=status.HTTP_200_OK, headers=upload_headers(upload, services))


@router.patch(
    "/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, responses=TUS_ERRORS, dependencies=[Tus],
    openapi_extra={"requestBody": {"content": {OFFSET_OCTET_STREAM: {"schema": {"type": "string",
                                                                                 "format": "binary"}}}}},
    summary="Send the next bytes of the upload",
)  # fmt: skip
async def upload_chunk(
    upload_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    device: PollingDevice,
    upload_offset: Annotated[str | None, Header(description="Where these bytes go: the offset HEAD gave")] = None,
    upload_checksum: Annotated[str | None, Header(description="'sha1 <base64 digest>' of this body")] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> Response:
    if (content_type or "").split(";")[0].strip().lower() != OFFSET_OCTET_STREAM:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"Send the bytes as {OFFSET_OCTET_STREAM}.")
    offset = header_count(upload_offset)
    if offset is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Send 'Upload-Offset': where these bytes start.")
    checksum = parse_checksum(upload_checksum)
    upload = await run_in_threadpool(own_upload, session, device, upload_id)
    if offset != upload.received:
        raise HTTPException(status.HTTP_409_CONFLICT, "Upload-Offset is not where the upload stands. Ask with HEAD "
                            "and send from there.", headers={"Upload-Offset": str(upload.received)})  # fmt: skip
    part = uploads.Part(services.blobs)
    try:
        whole, digest = await receive_part(request, part, upload.length - offset, checksum)
    except BaseException:
        part.discard()
        raise
    if not whole:
        log.info("upload %s: connection lost at offset %d after %d bytes (%s)", upload.id, offset, part.size,
                 "kept" if checksum is None else "not kept: Upload-Checksum covers the whole body")  # fmt: skip
        if checksum is not None:  # tus checksum extension: what arrived of the body cannot be checked
            part.discard()
            return Response(status_code=status.HTTP_400_BAD_REQUEST)
    elif checksum is not None and digest != checksum[1]:
        part.discard()
        raise HTTPException(CHECKSUM_MISMATCH, "The bytes do not match Upload-Checksum. Send them again.")
    return await run_in_threadpool(store_part, services, session, device, upload, offset, part)


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Upload-Checksum algorithm must be one of "
                            f"{', '.join(CHECKSUMS)}.")  # fmt: skip
    try:
        return algorithm, base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Upload-Checksum digest is not base64.") from None


async def receive_part(
    request: Request, part: uploads.Part, limit: int, checksum: tuple[str, bytes] | None
) -> tuple[bool, bytes | None]:
    """Write the body into `part` as it arrives, at most `limit` bytes of it: whether it arrived whole, and its digest
    by the checksum's algorithm. A body cut off is written as far as it came, unless a checksum was to cover it."""
    hashing = CHECKSUMS[checksum[0]]() if checksum is not None else None
    pending = bytearray()
    whole = True
    try:
        async for piece in request.stream():
            if part.size + len(pending) + len(piece) > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "More bytes than the Upload-Length left.")
            if hashing is not None:
                hashing.update(piece)
            pending += piece
            if len(pending) >= WRITE_AT:
                await run_in_threadpool(part.write, bytes(pending))
                pending.clear()
    except ClientDisconnect:  # the link dropped mid-body
        whole = False
    if pending and (whole or hashing is None):
        await run_in_threadpool(part.write, bytes(pending))
    return whole, hashing.digest() if hashing is not None else None


def store_part(
    services: Services, session: Session, device: Device, upload: Upload, offset: int, part: uploads.Part
) -> Response:
    if upload.job_id is not None:  # complete already (only an empty PATCH gets here): its job again
        part.discard()
    else:
        try:
            uploads.append_part(session, services.blobs, upload, offset, part)
        except OffsetConflict:
            session.refresh(upload)
            detail = "Another request moved this upload. Ask with HEAD and send from there."
            headers = {"Upload-Offset": str(upload.received)}
            raise HTTPException(status.HTTP_409_CONFLICT, detail, headers=headers) from None
        if upload.received == upload.length:
            finish(services, session, device, upload)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=upload_headers(upload, services))


def finish(services: Services, session: Session, device: Device, upload: Upload) -> None:
    """The last byte is in: accept the photo as one upload would be, or refuse it (and drop the upload) with the
    same reasons."""
    data = uploads.assemble(session, services.blobs, upload)
    assert device.id is not None
    try:  # the way in of every photo: accepted with whichever uploads arrive meanwhile, as by POST /v1/photos
        accepted = services.intake.submit(Arrival(device.id, upload.idempotency_key, data)).result()
    except (BadInput, IdempotencyConflict):
        uploads.remove(session, services.blobs, [upload.id])
        raise
    uploads.complete(session, services.blobs, upload, accepted.job_id)
    with bind_job(accepted.job_id):
        log.info("photo accepted", extra={"replayed": accepted.replayed, "size_bytes": len(data), "resumable": True})


@router.delete("/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, responses=TUS_ERRORS, dependencies=[Tus],
               summary="Abandon an upload (tus termination)")  # fmt: skip
def terminate_upload(upload_id: str, services: ServicesDep, session: SessionDep, device: PollingDevice) -> Response:
    upload = own_upload(session, device, upload_id)
    uploads.remove(session, services.blobs, [upload.id])
    return Response(status_code=status.HTTP_204_NO_CONTENT)

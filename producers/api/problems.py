"""Every error the API answers has one shape: RFC 9457 problem details, as `application/problem+json`.

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "The request does not fit the API: header idempotency-key: ...", "errors": [...]}

`detail` says what was wrong and what to do (a phone shows it, an operator reads it); `errors` lists, for a request
that does not fit the schema, each field and why. The handlers here turn mhogo's own errors, FastAPI's validation
errors, HTTP exceptions raised at the edge, a database that does not answer, and anything unexpected into that shape;
`document` makes the OpenAPI document say so, and marks the headers the API requires as required.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from core.blobs import FULL
from core.db import disk_full
from core.files import no_room
from schemas.api import Problem
from schemas.errors import (
    BadInput,
    IdempotencyConflict,
    MhogoError,
    OffsetConflict,
    ReviewRefused,
    StorageFull,
    TransientError,
    UnreadableImage,
    UnsupportedMediaType,
    UploadTooLarge,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
STATUS_FOR: list[tuple[type[MhogoError], int]] = [
    (UploadTooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (UnsupportedMediaType, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (UnreadableImage, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (IdempotencyConflict, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (OffsetConflict, status.HTTP_409_CONFLICT),
    (ReviewRefused, status.HTTP_409_CONFLICT),
    (BadInput, status.HTTP_400_BAD_REQUEST),
    (StorageFull, status.HTTP_507_INSUFFICIENT_STORAGE),
    (TransientError, status.HTTP_503_SERVICE_UNAVAILABLE),
]
RETRY_AFTER_S = {
    status.HTTP_503_SERVICE_UNAVAILABLE: 30,  # the broker or database is briefly away
    status.HTTP_507_INSUFFICIENT_STORAGE: 300,  # the disk is full until an operator frees space
}
# Headers the API requires of these operations, though FastAPI reads them as optional so that a missing one gets the
# API's own answer (a 400 saying what to send, the tus protocol's 412) rather than a bare validation error.
REQUIRED_HEADERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/v1/photos"): ("idempotency-key",),
    ("post", "/v1/uploads"): ("idempotency-key", "upload-length", "tus-resumable"),
    ("head", "/v1/uploads/{upload_id}"): ("tus-resumable",),
    ("patch", "/v1/uploads/{upload_id}"): ("upload-offset", "tus-resumable"),
    ("delete", "/v1/uploads/{upload_id}"): ("tus-resumable",),
}
# What a header must look like to be taken, written into the document so clients know before they send.
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "idempotency-key": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
    "upload-length": {"type": "string", "pattern": "^[0-9]{1,19}$"},
    "upload-offset": {"type": "string", "pattern": "^[0-9]{1,19}$"},
    "tus-resumable": {"type": "string", "enum": ["1.0.0"]},
}


def phrase(code: int) -> str:
    """The status's name; tus adds 460 for a checksum that does not match."""
    return "Checksum Mismatch" if code == 460 else HTTPStatus(code).phrase


class ProblemException(HTTPException):
    """An HTTP error raised at the edge whose problem carries extension members (RFC 9457 section 3.2) besides
    `detail`: e.g. `reason` on a 401, which tells a phone whose token was revoked from one with an unknown token."""

    def __init__(self, code: int, detail: str, extensions: Mapping[str, str],
                 headers: Mapping[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(code, detail, dict(headers) if headers else None)
        self.extensions = dict(extensions)


def body(code: int, detail: str, errors: Sequence[Mapping[str, str]] | None = None,
         extensions: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    problem = {"type": "about:blank", "title": phrase(code), "status": code, "detail": detail}
    return problem | dict(extensions or {}) | ({"errors": list(errors)} if errors else {})


def problem(code: int, detail: str, headers: Mapping[str, str] | None = None,
            errors: Sequence[Mapping[str, str]] | None = None,
            extensions: Mapping[str, str] | None = None) -> JSONResponse:  # fmt: skip
    return JSONResponse(body(code, detail, errors, extensions), status_code=code, headers=dict(headers or {}),
                        media_type=PROBLEM_JSON)  # fmt: skip


def encoded(code: int, detail: str) -> bytes:
    """The body as bytes, for an answer sent below FastAPI (the body-size middleware)."""
    return json.dumps(body(code, detail)).encode()


def status_for(exc: MhogoError) -> int:
    for kind, code in STATUS_FOR:
        if isinstance(exc, kind):
            return code
    return status.HTTP_500_INTERNAL_SERVER_ERROR


async def mhogo_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MhogoError)
    code = status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S[code])} if code in RETRY_AFTER_S else None
    return problem(code, str(exc), headers)


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, str(exc.detail), exc.headers, extensions=getattr(exc, "extensions", None))


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    """A request that does not fit the schema: which fields, and why, in words and one by one."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": " ".join(str(part) for part in error.get("loc", ())), "message": str(error.get("msg", ""))}
              for error in exc.errors()]  # fmt: skip
    detail = "The request does not fit the API: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(status.HTTP_422_UNPROCESSABLE_CONTENT, detail, errors=errors)


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database did not answer: nothing was accepted, so the phone must keep the photo and send it again."""
    if disk_full(exc):
        log.error("the database is out of space: %s", exc)
        return await mhogo_error(request, StorageFull(FULL))
    log.warning("database unavailable: %s", exc)
    return problem(status.HTTP_503_SERVICE_UNAVAILABLE,
                   "mhogo cannot store photos right now. Keep the photo and send it again soon.",
                   {"Retry-After": "10"})  # fmt: skip


async def os_error(request: Request, exc: Exception) -> JSONResponse:
    """A full disk wherever a route writes is StorageFull (507, Retry-After), never a 500; other I/O errors are."""
    if no_room(exc):
        log.error("no room to write: %s", exc)
        return await mhogo_error(request, StorageFull(FULL))
    return await unexpected(request, exc)


async def client_gone(_: Request, exc: Exception) -> JSONResponse:
    """The phone's link dropped while its request body came in: nothing of it was accepted, and nobody reads this
    answer. Not a server error: logged as the link it is (a resumable upload keeps what arrived, producers.api.tus)."""
    log.info("client disconnected before its request body was complete")
    return problem(status.HTTP_400_BAD_REQUEST, "The request body did not arrive whole. Send it again.")


async def unexpected(_: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback, answered in the same shape, without the exception's text."""
    log.error("unexpected error answering a request", exc_info=exc)
    return problem(status.HTTP_500_INTERNAL_SERVER_ERROR,
                   "Something went wrong on mhogo's side. Keep the photo and send it again later.")  # fmt: skip


def install(app: FastAPI) -> None:
    """Answer every error of `app` as a problem, and document the API so."""
    app.add_exception_handler(MhogoError, mhogo_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DatabaseOperationalError, database_unavailable)
    app.add_exception_handler(OSError, os_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Every error answer of every operation as a Problem in application/problem+json (FastAPI writes its 422s as
    a list of validation errors under application/json), and the required headers as required."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            for code, answer in operation.get("responses", {}).items():
                if code[:1] in ("4", "5"):
                    answer["content"] = problem_content
                    answer.setdefault("description", phrase(int(code)))
            required = REQUIRED_HEADERS.get((method, path), ())
            for parameter in operation.get("parameters", []):
                name = parameter["name"].lower()
                if parameter.get("in") == "header" and name in HEADER_SCHEMAS:
                    parameter["schema"] = HEADER_SCHEMAS[name]
                    parameter["required"] = name in required
    return schema

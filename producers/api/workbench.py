"""The agronomists' workbench page, GET /review: the built page (app/dist/review.html, made by `make app` with the
farmer's app; its hashed assets are served under /app/assets/), with the same security headers. Agronomists only:
anyone else's browser is sent to the login page, which sends them back here."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from producers.api.auth import allowed, person_from
from producers.api.deps import Credentials, ServicesDep, SessionDep
from producers.api.webapp import NOT_BUILT, SECURITY_HEADERS
from schemas.tables import Role

router = APIRouter(include_in_schema=False)
PAGE = "review.html"


@router.get("/review")
def workbench(request: Request, services: ServicesDep, session: SessionDep, credentials: Credentials) -> Response:
    try:
        person = person_from(request, session, credentials.credentials if credentials else None)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_401_UNAUTHORIZED:
            raise
        person = None  # a login that ended: log in again
    if person is None:
        return RedirectResponse(f"/login?{urlencode({'next': '/review'})}", status.HTTP_303_SEE_OTHER)
    allowed(person.user, (Role.AGRONOMIST,))
    page = services.settings.app_dir / PAGE
    if not page.is_file():
        return PlainTextResponse(NOT_BUILT, status_code=503, headers=SECURITY_HEADERS)
    return FileResponse(page, media_type="text/html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

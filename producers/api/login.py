"""The login page (`GET /login`, `POST /login`), logout, and `GET /v1/me` (who is logged in, and the CSRF token the
pages send with every change).

The login form is itself protected from cross-site posts: the page sets a random value in an HttpOnly cookie and in
the form; a post whose two values differ is refused (403). A wrong name or password is 401 and counts against the
client address (the "auth-failure" limit shared with bad device tokens, 429 past it); the account's own lockout
(core.users) answers 429 with Retry-After. After a login the browser goes to `next`, only ever a path of this site.
"""

from __future__ import annotations

import html
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from core.config import Settings
from core.users import end_session, log_in, start_session
from producers.api.auth import PERSON_ERRORS, SESSION_COOKIE, PersonDep
from producers.api.deps import ServicesDep, SessionDep, client_address
from schemas.errors import LoginRefused

router = APIRouter()
LOGIN_CSRF_COOKIE = "mhogo_login_csrf"
LANDING = {"agronomist": "/review", "operator": "/ops"}

STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f6f0;margin:0;display:flex;min-height:100vh;align-items:center;
justify-content:center;color:#1b2a1b}
form{background:#fff;padding:2rem;border-radius:12px;box-shadow:0 2px 12px #0002;width:min(22rem,90vw)}
h1{margin:0 0 1rem;font-size:1.5rem}label{display:block;margin:.8rem 0 .3rem;font-weight:600}
input{width:100%;box-sizing:border-box;font-size:1.2rem;padding:.7rem;border:1px solid #8a9a8a;border-radius:8px}
button{margin-top:1.2rem;width:100%;font-size:1.2rem;padding:.8rem;border:0;border-radius:8px;background:#2e7d32;
color:#fff}.error{color:#b3261e;font-weight:600}
"""


def safe_next(target: str | None) -> str | None:
    """A path of this site, or None: never another site (`//evil.example`, `https://...`, `/\\evil.example`)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or len(target) > 500:
        return None
    return target


def login_page(csrf: str, next_path: str | None, error: str | None = None, name: str = "") -> str:
    e = html.escape
    message = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mhogo: log in</title><style>{STYLE}</style></head><body>
<form method="post" action="/login"><h1>mhogo workbench</h1>{message}
<input type="hidden" name="csrf_token" value="{e(csrf)}"><input type="hidden" name="next" value="{e(next_path or "")}">
<label for="name">Name</label><input id="name" name="name" autocomplete="username" value="{e(name)}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form></body></html>"""


def with_login_csrf(response: Response, config: Settings, value: str) -> Response:
    response.set_cookie(LOGIN_CSRF_COOKIE, value, max_age=3600, httponly=True, samesite="strict",
                        secure=config.COOKIE_SECURE, path="/login")  # fmt: skip
    return response


@router.get("/login", include_in_schema=False)
def login_form(request: Request, services: ServicesDep, next: Annotated[str | None, Query()] = None) -> Response:
    csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    page = HTMLResponse(login_page(csrf[:100], safe_next(next)), headers={"Cache-Control": "no-store"})
    return with_login_csrf(page, services.settings, csrf[:100])


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    name: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    config = services.settings
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        fresh = secrets.token_urlsafe(32)
        page = HTMLResponse(login_page(fresh, safe_next(next), "The form had expired: log in again."), 403)
        return with_login_csrf(page, config, fresh)
    try:
        user = await run_in_threadpool(log_in, session, config, name, password)
    except LoginRefused as exc:
        wait = exc.retry_after_s
        if services.limiter is not None and wait is None:  # a failure counts like a bad device token, per address
            wait = await run_in_threadpool(services.limiter.client_wait_s, client_address(request), "auth-failure")
        code = status.HTTP_429_TOO_MANY_REQUESTS if wait else status.HTTP_401_UNAUTHORIZED
        headers = {"Retry-After": str(int(wait + 0.999))} if wait else {}
        return HTMLResponse(login_page(csrf_token, safe_next(next), str(exc), name), code, headers)
    started = await run_in_threadpool(start_session, session, config, user)
    response = RedirectResponse(safe_next(next) or LANDING.get(str(user.role), "/login"), status.HTTP_303_SEE_OTHER)
    response.set_cookie(SESSION_COOKIE, started.cookie, max_age=int(config.SESSION_TTL_S), httponly=True,
                        samesite="strict", secure=config.COOKIE_SECURE, path="/")  # fmt: skip
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", include_in_schema=False)
def logout(person: PersonDep, request: Request, session: SessionDep) -> Response:
    """Ends this browser's session (the CSRF header is checked by PersonDep, as for every change)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        end_session(session, cookie[:200])
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/v1/me", tags=["people"], responses=PERSON_ERRORS)
def me(person: PersonDep) -> dict[str, str | None]:
    """Who is logged in, their role, and (for a browser session) the CSRF token to send as X-CSRF-Token."""
    return {"name": person.user.name, "role": str(person.user.role), "csrf_token": person.csrf_token}

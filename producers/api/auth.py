"""Who a person is, from the credential they came with, and what their role lets them do.

A person authenticates with `Authorization: Bearer mhu_...` (an API token from `mhogo users token NAME`, for scripts)
or with the session cookie the login page sets (a browser). With the cookie, every state-changing request must also
carry the session's CSRF token in `X-CSRF-Token` (the pages read it from `GET /v1/me`; forms send it as a field and
their routes check it): another site can make a browser send the cookie, never the token. No credential: 401. A
device token: 403, whatever it asks (a phone speaks for a farmer, never for an agronomist or an operator). The
wrong role: 403. Nothing in a request's body or query says who is asking.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlmodel import Session

from core.devices import device_for_token
from core.users import TOKEN_PREFIX, session_user, user_for_token
from producers.api.deps import Credentials, SessionDep
from schemas.api import Problem
from schemas.tables import Role, User

SESSION_COOKIE = "mhogo_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_A_PERSON = ("A device token cannot do this: it speaks for a farmer's phone. Agronomists and operators log in as "
                "themselves (the login page, or `mhogo users token NAME` for scripts).")  # fmt: skip
CSRF_REFUSED = f"This request needs the page's CSRF token in {CSRF_HEADER}: reload the page and try again."
# What a person's routes may answer besides their success, for the OpenAPI document.
PERSON_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem} for code in (401, 403, 404, 409, 410, 422, 429, 503)
}


@dataclass(frozen=True)
class Person:
    """An authenticated person, and the CSRF token of their browser session (None with an API token)."""

    user: User
    csrf_token: str | None


def unauthenticated(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def person_from(request: Request, session: Session, bearer: str | None) -> Person | None:
    """The person behind the request's credential; None when it has none. Raises 401 for a credential that opens
    nothing, 403 for a device token, and for a cookie-borne unsafe request without the session's CSRF token."""
    if bearer is not None:
        if not bearer.startswith(TOKEN_PREFIX):
            if device_for_token(session, bearer) is not None:
                raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_A_PERSON)
            raise unauthenticated("Unknown token.")
        user = user_for_token(session, bearer)
        if user is None:
            raise unauthenticated("Unknown or revoked token: ask an operator for a new one.")
        return Person(user, None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = session_user(session, cookie[:200])
    if found is None:
        raise unauthenticated("Your login has ended: log in again.")
    user, browser = found
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), browser.csrf_token.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_REFUSED)
    return Person(user, browser.csrf_token)


def current_person(request: Request, session: SessionDep, credentials: Credentials) -> Person:
    person = person_from(request, session, credentials.credentials if credentials else None)
    if person is None:
        raise unauthenticated("Log in first: the login page, or 'Authorization: Bearer <your token>'.")
    return person


PersonDep = Annotated[Person, Depends(current_person)]


def allowed(user: User, roles: tuple[Role, ...]) -> None:
    if Role(user.role) not in roles:
        needed = " or ".join(role.value for role in roles)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"This needs the {needed} role; {user.name} is {user.role}.")


def require(*roles: Role) -> Callable[[Person], User]:
    """A dependency: the authenticated person, if their role is one of `roles` (403 otherwise)."""

    def check(person: PersonDep) -> User:
        allowed(person.user, roles)
        return person.user

    return check


AgronomistDep = Annotated[User, Depends(require(Role.AGRONOMIST))]
OperatorUserDep = Annotated[User, Depends(require(Role.OPERATOR))]

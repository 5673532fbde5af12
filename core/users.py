"""People: agronomists and operators, with a password (argon2, through pwdlib), API tokens for scripts, and browser
sessions. Only hashes are stored: argon2 for passwords (slow on purpose: a stolen database does not give them up),
sha256 for tokens and session ids (256 random bits each, so a fast hash is as good as a slow one).

A login fails the same way, at the same cost, for an unknown name and a wrong password; LOGIN_MAX_FAILURES wrong
passwords in a row lock the login for LOGIN_LOCKOUT_S, the right password included. Disabling a person ends their
sessions and tokens at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.config import Settings
from core.devices import hash_token
from schemas.errors import AccountRefused, LoginRefused
from schemas.tables import Role, User, UserSession, UserToken, utcnow

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps one request from costing much
TOKEN_PREFIX = "mhu_"  # a person's API token; a device's has no prefix
WRONG = "Wrong name or password."
hasher = PasswordHash.recommended()
_NOBODY = hasher.hash("a password nobody has")  # verified for unknown names, so they cost what a wrong password does


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountRefused(f"A password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters.")


def add_user(session: Session, name: str, role: Role, password: str) -> User:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise AccountRefused("A name needs 1 to 100 characters.")
    check_password(password)
    user = User(name=name, role=Role(role), password_hash=hasher.hash(password))
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AccountRefused(f"There is already someone called {name!r}.") from exc
    session.refresh(user)
    return user


def find_user(session: Session, name: str) -> User | None:
    return session.exec(select(User).where(col(User.name) == name)).first()


def set_password(session: Session, user: User, password: str) -> None:
    check_password(password)
    user.password_hash, user.failed_logins, user.locked_until = hasher.hash(password), 0, None
    session.add(user)
    session.commit()


def log_in(session: Session, config: Settings, name: str, password: str, now: datetime | None = None) -> User:
    """The person whose name and password these are; LoginRefused otherwise, with how long to wait when locked."""
    now = now or utcnow()
    user = find_user(session, name[:100])
    if user is None or user.disabled_at is not None:
        hasher.verify(password[:MAX_PASSWORD], _NOBODY)
        raise LoginRefused(WRONG)
    if user.locked_until is not None and user.locked_until > now:
        raise LoginRefused("Too many wrong passwords: this login is locked for a while.",
                           (user.locked_until - now).total_seconds())  # fmt: skip
    if not hasher.verify(password[:MAX_PASSWORD], user.password_hash):
        failures = user.failed_logins + 1
        locked = now + timedelta(seconds=config.LOGIN_LOCKOUT_S) if failures >= config.LOGIN_MAX_FAILURES else None
        counted = 0 if locked else User.failed_logins + 1
        session.execute(update(User).where(col(User.id) == user.id).values(failed_logins=counted, locked_until=locked))
        session.commit()
        if locked:
            raise LoginRefused("Too many wrong passwords: this login is locked for a while.", config.LOGIN_LOCKOUT_S)
        raise LoginRefused(WRONG)
    if user.failed_logins or user.locked_until:
        user.failed_logins, user.locked_until = 0, None
        session.add(user)
        session.commit()
    return user


def disable(session: Session, user: User) -> None:
    """Nothing of theirs opens any more: their sessions end and their tokens are revoked."""
    now = utcnow()
    user.disabled_at = now
    session.add(user)
    session.execute(update(UserSession).where(col(UserSession.user_id) == user.id, col(UserSession.ended_at).is_(None))
                    .values(ended_at=now))  # fmt: skip
    session.execute(update(UserToken).where(col(UserToken.user_id) == user.id, col(UserToken.revoked_at).is_(None))
                    .values(revoked_at=now))  # fmt: skip
    session.commit()


def issue_token(session: Session, user: User) -> str:
    """A new API token for the person, shown this once; only its hash is kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(UserToken(user_id=user.id or 0, token_hash=hash_token(token)))
    session.commit()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    statement = (
        select(User)
        .join(UserToken, col(UserToken.user_id) == col(User.id))
        .where(col(UserToken.token_hash) == hash_token(token), col(UserToken.revoked_at).is_(None))
        .where(col(User.disabled_at).is_(None))
    )
    return session.exec(statement).first()


@dataclass(frozen=True)
class NewSession:
    cookie: str  # what the browser keeps; never stored
    csrf_token: str  # what every state-changing request of that browser must carry
    expires_at: datetime


def start_session(session: Session, config: Settings, user: User) -> NewSession:
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=config.SESSION_TTL_S)
    session.add(UserSession(id_hash=hash_token(cookie), user_id=user.id or 0, csrf_token=csrf, expires_at=expires))
    session.commit()
    return NewSession(cookie, csrf, expires)


def session_user(session: Session, cookie: str, now: datetime | None = None) -> tuple[User, UserSession] | None:
    """The person a session cookie belongs to, and the session; None once it expired, ended, or they were disabled."""
    statement = (
        select(User, UserSession)
        .join(UserSession, col(UserSession.user_id) == col(User.id))
        .where(col(UserSession.id_hash) == hash_token(cookie), col(UserSession.ended_at).is_(None))
        .where(col(UserSession.expires_at) > (now or utcnow()), col(User.disabled_at).is_(None))
    )
    found = session.exec(statement).first()
    return (found[0], found[1]) if found is not None else None


def end_session(session: Session, cookie: str) -> None:
    session.execute(update(UserSession).where(col(UserSession.id_hash) == hash_token(cookie))
                    .values(ended_at=utcnow()))  # fmt: skip
    session.commit()

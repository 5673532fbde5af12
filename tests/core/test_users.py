"""People (core.users): argon2 passwords, lockout after repeated failures, hashed tokens and sessions, disabling."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from core.config import Settings
from core.devices import hash_token
from core.users import (
    add_user,
    disable,
    end_session,
    issue_token,
    log_in,
    session_user,
    start_session,
    user_for_token,
)
from schemas.errors import AccountRefused, LoginRefused
from schemas.tables import Role, User, UserSession, UserToken, utcnow

PASSWORD = "correct horse battery"


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    return Settings(HOME=tmp_path, LOGIN_MAX_FAILURES=3, LOGIN_LOCKOUT_S=60)


def test_the_password_is_kept_as_an_argon2_hash_and_opens_the_login(session: Session, config: Settings) -> None:
    user = add_user(session, "amina", Role.AGRONOMIST, PASSWORD)
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert log_in(session, config, "amina", PASSWORD).id == user.id
    with pytest.raises(AccountRefused, match="already"):
        add_user(session, "amina", Role.OPERATOR, PASSWORD)
    with pytest.raises(AccountRefused, match="10"):
        add_user(session, "baraka", Role.OPERATOR, "short")


def test_repeated_failures_lock_the_login_even_for_the_right_password_until_it_expires(
    session: Session, config: Settings
) -> None:
    add_user(session, "amina", Role.AGRONOMIST, PASSWORD)
    for _ in range(2):
        with pytest.raises(LoginRefused, match="Wrong name or password") as refused:
            log_in(session, config, "amina", "wrong password")
        assert refused.value.retry_after_s is None
    with pytest.raises(LoginRefused, match="locked") as locked:
        log_in(session, config, "amina", "wrong password")
    assert locked.value.retry_after_s == 60
    with pytest.raises(LoginRefused, match="locked"):
        log_in(session, config, "amina", PASSWORD)
    later = utcnow() + timedelta(seconds=61)
    assert log_in(session, config, "amina", PASSWORD, now=later).name == "amina"
    with pytest.raises(LoginRefused, match="Wrong name or password"):  # an unknown name: the same answer
        log_in(session, config, "nobody", PASSWORD)


def test_tokens_and_sessions_are_stored_hashed_and_end_with_the_person(session: Session, config: Settings) -> None:
    user = add_user(session, "amina", Role.AGRONOMIST, PASSWORD)
    token = issue_token(session, user)
    assert token.startswith("mhu_")
    [stored] = session.exec(select(UserToken)).all()
    assert stored.token_hash == hash_token(token)
    assert user_for_token(session, token) == user
    browser = start_session(session, config, user)
    [kept] = session.exec(select(UserSession)).all()
    assert kept.id_hash == hash_token(browser.cookie) != browser.cookie
    assert session_user(session, browser.cookie) is not None
    assert session_user(session, browser.cookie, now=browser.expires_at + timedelta(seconds=1)) is None
    end_session(session, browser.cookie)
    assert session_user(session, browser.cookie) is None
    again = start_session(session, config, user)
    disable(session, user)
    assert session_user(session, again.cookie) is None
    assert user_for_token(session, token) is None
    with pytest.raises(LoginRefused):
        log_in(session, config, "amina", PASSWORD)
    assert session.exec(select(User)).one().disabled_at is not None

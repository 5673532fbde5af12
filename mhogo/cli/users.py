"""`mhogo users`: the people who log in (agronomists label and review photos; operators run the deployment)."""

from __future__ import annotations

import sys

import click

from core.config import settings
from core.db import open_session

ROLES = ("agronomist", "operator")


@click.group()
def users() -> None:
    """People: logins, roles and API tokens."""


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to ask the password on: give it on standard input with --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What they may do.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
def users_add(name: str, role: str, password_stdin: bool) -> None:
    """Add a person who logs in; the password is asked twice (or read with --password-stdin), only its argon2 hash
    is kept."""
    from core.users import add_user
    from schemas.errors import AccountRefused
    from schemas.tables import Role

    password = read_password(password_stdin)
    with open_session(settings.database_url) as session:
        try:
            user = add_user(session, name, Role(role), password)
        except AccountRefused as exc:
            raise click.UsageError(str(exc)) from exc
    click.echo(f"{user.name} added as {user.role} (id {user.id}); they log in at {settings.public_url}/login")


@users.command("token")
@click.argument("name")
def users_token(name: str) -> None:
    """A new API token for a person's scripts (`Authorization: Bearer <token>`), printed once, as the last line."""
    from core.users import find_user, issue_token

    with open_session(settings.database_url) as session:
        user = find_user(session, name)
        if user is None or user.disabled_at is not None:
            raise click.UsageError(f"no one called {name!r} can log in: `mhogo users list`")
        token = issue_token(session, user)
    click.echo(f"a new token for {name} ({user.role}), shown only now:", err=True)
    click.echo(token)


@users.command("list")
def users_list() -> None:
    """Everyone with a login, their role, and whether they are disabled or locked."""
    from sqlmodel import col, select

    from schemas.tables import User, utcnow

    with open_session(settings.database_url) as session:
        people = session.exec(select(User).order_by(col(User.name))).all()
    now = utcnow()
    for user in people:
        state = "disabled" if user.disabled_at else "locked" if user.locked_until and user.locked_until > now else ""
        click.echo(f"{user.id:>4}  {user.name:<30} {user.role:<11} {state}".rstrip())


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """Nothing of theirs opens any more: their sessions end and their tokens stop working. Their labels stay."""
    from core.users import disable, find_user

    with open_session(settings.database_url) as session:
        user = find_user(session, name)
        if user is None:
            raise click.UsageError(f"no one called {name!r}: `mhogo users list`")
        disable(session, user)
    click.echo(f"{name} disabled")


COMMANDS = (users,)

"""`mhogo devices`: the phones allowed to send photos, each with its own token."""

from __future__ import annotations

import os

import click

from core.config import settings
from core.db import open_session


@click.group()
def devices() -> None:
    """Device tokens."""


@devices.command("add")
@click.argument("name")
def devices_add(name: str) -> None:
    """Register a device; its token is printed once, as the last line."""
    from core.devices import add_device

    with open_session(settings.database_url) as session:
        device, token = add_device(session, name)
    click.echo(f"device {device.id} '{device.name}' registered; its token (shown only now):", err=True)
    click.echo(token)


@devices.command("list")
def devices_list() -> None:
    from core.devices import list_devices, revoked

    with open_session(settings.database_url) as session:
        gone = revoked(session)
        for device in list_devices(session):
            mark = f"\trevoked {gone[device.id].revoked_at:%Y-%m-%d %H:%M}" if device.id in gone else ""
            click.echo(f"{device.id}\t{device.name}\t{device.created_at:%Y-%m-%d %H:%M}{mark}")


@devices.command("revoke")
@click.argument("device_id", type=int)
@click.option("--by", default=lambda: os.environ.get("USER", "operator"), help="Who revokes it.")
@click.option("--reason", default=None, help="Why (a lost phone, a leaked token).")
def devices_revoke(device_id: int, by: str, reason: str | None) -> None:
    """Revoke a device's token: it stops working at once everywhere; the device's jobs and results stay."""
    from core.devices import revoke_device

    with open_session(settings.database_url) as session:
        try:
            device = revoke_device(session, device_id, by, reason)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"device {device.id} '{device.name}': token revoked")


COMMANDS = (devices,)

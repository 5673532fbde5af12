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
@click.option("--link", is_flag=True, help="Print a one-time pairing link for the farmer's app (and its QR code) "
              "instead of the token.")  # fmt: skip
def devices_add(name: str, link: bool) -> None:
    """Register a device; its token (or, with --link, its pairing link) is printed once, as the last line."""
    from core.devices import add_device

    with open_session(settings.database_url) as session:
        device, token = add_device(session, name)
    assert device.id is not None
    if link:  # the token is never shown: pairing gives the phone a new one
        click.echo(f"device {device.id} '{device.name}' registered.", err=True)
        print_pairing_link(device.id)
        return
    click.echo(f"device {device.id} '{device.name}' registered; its token (shown only now):", err=True)
    click.echo(token)


@devices.command("link")
@click.argument("device_id", type=int)
def devices_link(device_id: int) -> None:
    """A new pairing link for a device (a new phone for the same farmer), printed as the last line; the device's
    earlier links stop working, and so, once it is opened, does the token of the phone paired before."""
    print_pairing_link(device_id)


def print_pairing_link(device_id: int) -> None:
    """The link on standard output (the last line), its QR code and what to do with it on standard error. The code
    travels in the link's fragment (#pair=...), which a browser never sends, so no server or proxy logs it."""
    from core.devices import new_pairing
    from schemas.errors import DeviceRevoked

    with open_session(settings.database_url) as session:
        try:
            pairing = new_pairing(session, device_id, settings.PAIRING_EXPIRE_S)
        except (LookupError, DeviceRevoked) as exc:
            raise click.ClickException(str(exc)) from exc
    url = f"{settings.public_url}/app/#pair={pairing.code}"
    click.echo(qr_code(url), err=True, nl=False)
    click.echo(f"Open this link on the farmer's phone, or scan the code with its camera. It pairs one phone, once, "
               f"until {pairing.expires_at:%Y-%m-%d %H:%M} UTC:", err=True)  # fmt: skip
    click.echo(url)


def qr_code(text: str) -> str:
    """`text` as a QR code drawn with block characters, dark on light (as a camera reads it) on a dark terminal."""
    import io

    import qrcode

    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(text)
    code.make(fit=True)
    drawn = io.StringIO()
    code.print_ascii(out=drawn, invert=True)
    return drawn.getvalue()


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

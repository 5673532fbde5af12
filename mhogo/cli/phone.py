"""`mhogo phone`: the reference phone client from the command line (see producers/phone.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from core.config import settings
from schemas.labels import Label

CLASSES = [label.value for label in Label]


def outbox_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option("--outbox", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The phone's outbox folder; default MHOGO_HOME/phone.")(function)  # fmt: skip


def outbox_folder(outbox: Path | None) -> Path:
    return outbox or settings.HOME / "phone"


def describe(answer: dict[str, Any] | None) -> str:
    """One line of what the app shows: the label or the reason, and whose answer it is."""
    if answer is None:
        return ""
    whose = "provisional, this phone's model" if answer.get("provisional") else "mhogo"
    if answer.get("status") == "classified":
        result = answer.get("result") or answer  # the server nests its diagnosis under `result`
        return f"{result['label']} {result['confidence']:.0%} ({whose})"
    if answer.get("status") == "rejected":
        reason = (answer.get("rejection") or answer).get("reason")
        return f"rejected: {reason} ({whose})"
    return f"{answer.get('status')} ({whose})"


@click.group()
def phone() -> None:
    """A phone: take photos into a durable outbox, send them (and feedback on them) when the network allows, fetch
    the results."""


@phone.command("take")
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@outbox_option
@click.option("--max-side", type=int, default=1024, show_default=True, help="Longer side after downscaling.")
@click.option("--quality", type=click.IntRange(30, 95), default=85, show_default=True, help="JPEG quality.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), envvar="MHOGO_PHONE_MODEL",
              default=None, help="The phone build (`mhogo export`, .onnx with its .json) for a provisional answer "
              "offline; or MHOGO_PHONE_MODEL.")  # fmt: skip
def phone_take(photos: tuple[Path, ...], outbox: Path | None, max_side: int, quality: int, model: Path | None) -> None:
    """Put photos in the outbox, shrunk and with their Idempotency-Key; prints each key, and with --model the phone's
    own provisional answer, given at once without any network."""
    from producers.phone import Outbox

    offline = None
    if model is not None:
        from ml.phone_build import PhoneBuild

        offline = PhoneBuild(model)
    box = Outbox(outbox_folder(outbox))
    try:
        taken = [box.take(path, max_side, quality, offline) for path in photos]
    finally:
        box.close()
    for photo in taken:
        click.echo(f"{photo.key}  {photo.source}  {describe(photo.answer)}".rstrip())
    before, after = sum(p.original_bytes for p in taken), sum(p.sent_bytes for p in taken)
    click.echo(f"{len(taken)} photos: {before} bytes taken, {after} to send ({1 - after / before:.0%} saved)", err=True)


@phone.command("feedback")
@click.argument("key")
@click.argument("label", type=click.Choice(CLASSES))
@outbox_option
@click.option("--comment", default=None, help="What the person saw, in their words.")
def phone_feedback(key: str, label: str, outbox: Path | None, comment: str | None) -> None:
    """Say what the leaf of photo KEY really has (the farmer's word: a phone speaks for a farmer); it goes with the
    next `mhogo phone sync` once the diagnosis is in. Prints the feedback's own key (its Idempotency-Key)."""
    from producers.phone import Outbox

    box = Outbox(outbox_folder(outbox))
    try:
        if box.find(key) is None:
            raise click.BadParameter(f"no photo {key} in this outbox: `mhogo phone list` shows them", param_hint="KEY")
        click.echo(box.add_feedback(key, label, comment).key)
    finally:
        box.close()


@phone.command("sync")
@outbox_option
@click.option("--api-url", default=None, help="Default: MHOGO_PUBLIC_URL.")
@click.option("--token", envvar="MHOGO_PHONE_TOKEN", required=True, help="The device token (or MHOGO_PHONE_TOKEN).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Give up after this many seconds.")
def phone_sync(outbox: Path | None, api_url: str | None, token: str, timeout: float) -> None:
    """Send what waits (photos and feedback), fetch what was sent, print each result as it comes (one JSON line
    each). Exit 0 when everything is done; run it again later for the rest: nothing is sent twice."""
    from producers.phone import open_phone

    with open_phone(outbox_folder(outbox), api_url or settings.public_url, token) as device:
        for photo in device.sync(timeout):
            click.echo(json.dumps({"key": photo.key, "source": photo.source, "job_id": photo.job_id,
                                   "error": photo.error, "result": photo.result,
                                   "provisional": photo.provisional}))  # fmt: skip
        left = device.outbox.left()
    if left:
        click.echo(f"{left} photos and feedback not done yet: run `mhogo phone sync` again", err=True)
    sys.exit(1 if left else 0)


@phone.command("list")
@outbox_option
def phone_list(outbox: Path | None) -> None:
    """Every photo in the outbox with its state, attempts, job and outcome."""
    from producers.phone import Outbox

    box = Outbox(outbox_folder(outbox))
    try:
        for photo in box.photos():
            outcome = describe(photo.answer) or photo.error or ""
            click.echo(f"{photo.key}  {photo.state:8} {photo.attempts:3}  {photo.job_id or '-':32}  {outcome}")
        for item in box.feedback():
            outcome = "sent" if item.event_id else item.error or ""
            click.echo(f"  feedback on {item.photo}: {item.label} ({item.source})  {item.state:8} {outcome}".rstrip())
    finally:
        box.close()


COMMANDS = (phone,)

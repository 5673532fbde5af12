"""The operators' side of the `mhogo` command: `status`, `retrain` now, and the switches that pause automatic
promotion and retraining."""

from __future__ import annotations

import json
import os

import click

from core.config import settings
from core.db import open_session
from schemas.tables import SwitchName

SWITCHES = {"promotion": (SwitchName.AUTO_PROMOTION, "automatic promotion"),
            "retraining": (SwitchName.AUTO_RETRAIN, "automatic retraining")}  # fmt: skip


@click.command()
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=6.0, show_default=True,
              help="The period looked at: the last tick in it, champion moves and retraining runs.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
def status(hours: float, as_json: bool) -> None:
    """What the dashboard (/ops) shows, for a terminal: the last tick's figures, the queues, the models and switches,
    the champion's moves and the retraining runs."""
    import redis

    from core.status import render_text, status_report
    from mhogo.cli.db import require_deployment

    namespace = require_deployment()
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        with open_session(settings.database_url) as session:
            report = status_report(session, client, settings, hours, namespace)
    finally:
        client.close()
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report), nl=as_json)


def flip(group: str, enabled: bool, changed_by: str, reason: str | None) -> None:
    """Set one switch and print its new state, as `mhogo status` shows it."""
    from core import triggers
    from core.status import switches

    name, what = SWITCHES[group]
    with open_session(settings.database_url) as session:
        triggers.set_switch(session, name, enabled, changed_by, reason)
        state = switches(session, settings)[name]
    because = f": {state['reason']}" if state["reason"] else ""
    click.echo(f"{what}: {'on' if state['on'] else 'paused'} (by {state['changed_by']}{because})")
    if enabled and not state["setting"]:
        click.echo("it stays off: MHOGO_AUTO_RETRAIN is false in this environment", err=True)


def switch_command(group: str, verb: str, enabled: bool) -> click.Command:
    what = SWITCHES[group][1]

    @click.command(name=verb, help=f"{verb.capitalize()} {what}; every worker reads the switch at its next decision.")
    @click.option("--by", "changed_by", default=lambda: os.environ.get("USER", "operator"), help="Who flips it.")
    @click.option("--reason", default=None, help="Why; `mhogo status` and the dashboard show it.")
    def command(changed_by: str, reason: str | None) -> None:
        flip(group, enabled, changed_by, reason)

    return command


def switch_group(group: str) -> click.Group:
    commands = [switch_command(group, "pause", enabled=False), switch_command(group, "resume", enabled=True)]
    return click.Group(group, commands=commands, help=f"Pause or resume {SWITCHES[group][1]}.")


@click.group(invoke_without_command=True)
@click.option("--reason", default="asked for by an operator", help="Recorded with the run and the model it makes.")
@click.option("--by", "fired_by", default=lambda: os.environ.get("USER", "operator"), help="Who asks.")
@click.option("--dataset", "dataset_version", default=None,
              help="Train on this dataset version (`mhogo dataset snapshot`) instead of building one.")  # fmt: skip
@click.pass_context
def retrain(context: click.Context, reason: str, fired_by: str, dataset_version: str | None) -> None:
    """Fire a retraining run now (no cooldown; not while another is open); prints its id. The retraining worker
    builds the dataset from MHOGO_TRAIN_DATA_DIR plus trusted feedback (or takes --dataset's version), trains, judges
    and maybe promotes. `mhogo retrain cancel RUN` stops an open run instead."""
    if context.invoked_subcommand is not None:
        return
    from datetime import timedelta

    import redis

    from core.celery_app import app
    from core.publisher import Publisher
    from core.triggers import Firing, fire
    from mhogo.cli.db import require_deployment
    from schemas.tables import utcnow

    namespace = require_deployment()
    figures = {"reason": reason} | ({"dataset_version": dataset_version} if dataset_version else {})
    with open_session(settings.database_url) as session:
        if dataset_version:
            from core.datasets import get_version
            from schemas.errors import BadInput

            try:
                get_version(session, dataset_version)
            except BadInput as exc:
                raise click.UsageError(str(exc)) from exc
        run = fire(session, redis.Redis.from_url(settings.REDIS_URL), namespace, Publisher(app).publish_retrain,
                   Firing("operator", figures), fired_by, timedelta(0), utcnow())  # fmt: skip
    if run is None:
        raise click.ClickException("a retraining run is open already: `mhogo status` shows it")
    click.echo(run.id)


@retrain.command("cancel")
@click.argument("run_id", type=int)
@click.option("--by", default=lambda: os.environ.get("USER", "operator"), help="Who cancels it.")
@click.option("--reason", default=None, help="Why; `mhogo status` and the dashboard show it.")
def retrain_cancel(run_id: int, by: str, reason: str | None) -> None:
    """Stop an open run: it takes no decision (a worker training it finishes, then leaves the champion as it is),
    and the rules may fire again after the cooldown."""
    from core import triggers
    from schemas.errors import RegistryError

    with open_session(settings.database_url) as session:
        try:
            run = triggers.cancel_run(session, run_id, by, reason)
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"retraining run {run.id}: {run.status} ({run.decision})")


COMMANDS = (status, retrain, switch_group("promotion"), switch_group("retraining"))

"""The `mhogo` command. Each module of this package holds one group of commands, and each command imports what it
needs when it runs, so `mhogo devices` never loads torch."""

from __future__ import annotations

import os

import click

from core.config import settings
from mhogo.cli import (
    datasets,
    db,
    devices,
    jobs,
    models,
    operations,
    phone,
    retention,
    review,
    scenario,
    services,
    training,
    users,
)


@click.group()
def main() -> None:
    """mhogo: cassava leaf disease diagnosis from farmers' photos."""
    # MHOGO_HOME holds farmers' photos, the database and secrets: what mhogo and its services make there is this
    # user's alone (folders 0700, files 0600), whatever the login's umask.
    os.umask(0o077)
    settings.HOME.mkdir(parents=True, exist_ok=True)
    settings.HOME.chmod(0o700)


for group in (
    services,
    db,
    devices,
    users,
    jobs,
    operations,
    review,
    retention,
    training,
    datasets,
    models,
    phone,
    scenario,
):
    for command in group.COMMANDS:
        main.add_command(command)

"""The `mhogo` command. Each module of this package holds one group of commands, and each command imports what it
needs when it runs, so `mhogo devices` never loads torch."""

from __future__ import annotations

import click

from mhogo.cli import db, devices, jobs, models, operations, phone, scenario, services, training


@click.group()
def main() -> None:
    """mhogo: cassava leaf disease diagnosis from farmers' photos."""


for group in (services, db, devices, jobs, operations, training, models, phone, scenario):
    for command in group.COMMANDS:
        main.add_command(command)

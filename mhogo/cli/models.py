"""`mhogo models`: the registry of every model trained, the champion that serves and the challenger, with every
move of either kept."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from core.blobs import BlobStore
from core.config import settings
from core.db import open_session
from schemas.errors import MhogoError

T = TypeVar("T")


@click.group()
def models() -> None:
    """The model registry: versions, the champion that serves, the challenger."""


def register_file(artifact: Path, made_by: str | None, parent: str | None, challenger: bool) -> str:
    from core import registry
    from schemas.tables import ModelAliasName

    with open_session(settings.database_url) as session:
        row = registry.register(session, BlobStore(settings.blob_dir), artifact, made_by, parent)
        if challenger:
            registry.set_alias(session, ModelAliasName.CHALLENGER, row.version, made_by or "mhogo", "registered")
        return row.version


@models.command("register")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--made-by", default=None, help="Who or what made it; default: what the checkpoint says.")
@click.option("--parent", default=None, help="The version it was trained from or to replace.")
@click.option("--challenger", is_flag=True, help="Also make it the challenger.")
def models_register(artifact: Path, made_by: str | None, parent: str | None, challenger: bool) -> None:
    """Register a checkpoint file; prints its version."""
    click.echo(_guarded(lambda: register_file(artifact, made_by, parent, challenger)))


@models.command("list")
def models_list() -> None:
    from core import registry

    with open_session(settings.database_url) as session:
        registry.ensure_champion(session, BlobStore(settings.blob_dir), settings.model_path)
        by_version: dict[str, list[str]] = {}
        for alias, version in registry.aliases(session).items():
            by_version.setdefault(version, []).append(alias)
        for row in registry.versions(session):
            figures = row.metrics.get("test_metrics") or row.metrics.get("val_metrics") or {}
            cv = row.metrics.get("cross_validation") or {}
            accuracy = (f"{figures['accuracy']:.3f}" if "accuracy" in figures
                        else f"cv {cv['mean_accuracy']:.3f}" if "mean_accuracy" in cv else "-")  # fmt: skip
            tags = ",".join(by_version.get(row.version, [])) or "-"
            click.echo(f"{row.version}\t{tags}\t{row.created_at:%Y-%m-%d %H:%M}\tacc {accuracy}\t"
                       f"{row.dataset_version}\t{row.made_by}")  # fmt: skip


@models.command("show")
@click.argument("version")
def models_show(version: str) -> None:
    from core import registry

    with open_session(settings.database_url) as session:
        row = _guarded(lambda: registry.get_version(session, version))
        click.echo(json.dumps(row.model_dump(mode="json"), indent=2))


@models.command("promote")
@click.argument("version")
@click.option("--by", "changed_by", default="operator", help="Who promotes, for the record.")
@click.option("--reason", default="promoted by an operator")
def models_promote(version: str, changed_by: str, reason: str) -> None:
    """Make VERSION the champion; running inference workers switch to it without a restart (its serving build is
    made first if it has none, so they switch at once)."""
    from core import registry
    from core.serving import prepare_for_serving

    with open_session(settings.database_url) as session:
        row = _guarded(lambda: registry.get_version(session, version))
        _guarded(lambda: prepare_for_serving(settings, BlobStore(settings.blob_dir), row))
        change = _guarded(lambda: registry.promote(session, version, changed_by, reason))
    click.echo(f"champion: {change.version} (was {change.previous_version})")


@models.command("rollback")
@click.option("--by", "changed_by", default="operator", help="Who rolls back, for the record.")
def models_rollback(changed_by: str) -> None:
    """Give the champion back to the model it replaced last."""
    from core import registry

    with open_session(settings.database_url) as session:
        change = _guarded(lambda: registry.rollback(session, changed_by))
    click.echo(f"champion: {change.version} (was {change.previous_version})")


def _guarded(action: Callable[[], T]) -> T:
    """Operator mistakes (an unknown version, nothing to roll back to) are a message and exit code 1, not a trace."""
    try:
        return action()
    except MhogoError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


COMMANDS = (models,)

"""`mhogo dataset`: frozen, hashed versions of the labelled photos (core.datasets) - make one, list them, compare
two, and write one out in ../shared/data's layout for `mhogo train --data`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from core.config import settings
from core.db import open_session

if TYPE_CHECKING:
    from core.blobs import BlobStore


@click.group()
def dataset() -> None:
    """Dataset versions: snapshot, list, diff, export, import."""


def _blobs() -> BlobStore:
    from core.blobs import BlobStore

    return BlobStore(settings.blob_dir)


@dataset.command("snapshot")
@click.option("--by", "created_by", default="mhogo dataset snapshot", help="Who makes it, for the record.")
def dataset_snapshot(created_by: str) -> None:
    """Freeze the labelled photos as a version; its id is the last line (the same set gives the same id)."""
    from core.datasets import describe, snapshot

    with open_session(settings.database_url) as session:
        version = snapshot(session, _blobs(), settings, created_by)
        click.echo(describe(version), err=True)
        left_out = version.counts.get("left_out", {})
        if left_out:
            click.echo("left out: " + ", ".join(f"{n} {why}" for why, n in left_out.items()), err=True)
    click.echo(version.id)


@dataset.command("list")
def dataset_list() -> None:
    """Every version, newest first."""
    from core.datasets import describe, list_versions

    with open_session(settings.database_url) as session:
        for version in list_versions(session):
            click.echo(describe(version))


@dataset.command("diff")
@click.argument("a")
@click.argument("b")
def dataset_diff(a: str, b: str) -> None:
    """Per class, what B added, removed and relabelled against A."""
    from core.datasets import diff
    from schemas.errors import BadInput

    with open_session(settings.database_url) as session:
        try:
            changes = diff(session, _blobs(), a, b)
        except BadInput as exc:
            raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(changes, indent=2))


@dataset.command("export")
@click.argument("version")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def dataset_export(version: str, out: Path) -> None:
    """Write VERSION to OUT as ../shared/data lays photos out, with its MANIFEST.csv: `mhogo train --data OUT`."""
    from core.datasets import export
    from schemas.errors import BadInput

    with open_session(settings.database_url) as session:
        try:
            written = export(session, _blobs(), version, out)
        except BadInput as exc:
            raise click.UsageError(str(exc)) from exc
    click.echo(f"{written} photos of {version} written to {out}")


@dataset.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def dataset_import(folder: Path) -> None:
    """Take FOLDER's photos (cassava/<class>/, negatives/) into the label history as curated labels."""
    from core.labels import import_curated

    with open_session(settings.database_url) as session:
        added = import_curated(session, _blobs(), folder)
    click.echo(f"{added} photos imported as curated labels")


COMMANDS = (dataset,)

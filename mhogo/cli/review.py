"""`mhogo review`: the agronomists' review queue from the command line: refresh it, audit the training labels with
cleanlab, and see where it stands and how far agronomists agree."""

from __future__ import annotations

import json
from pathlib import Path

import click

from core.config import settings
from core.db import open_session


@click.group()
def review() -> None:
    """The agronomists' review queue."""


@review.command("refresh")
def review_refresh() -> None:
    """Add the photos finished or disputed since the last pass (the events workers do this every tick)."""
    from core.review import refresh

    with open_session(settings.database_url) as session:
        changed = refresh(session, settings)
    click.echo(f"{changed} review items added or given a new reason")


@review.command("status")
def review_status() -> None:
    """Items by status, and why those still waiting are in the queue."""
    from core.review import status_counts

    with open_session(settings.database_url) as session:
        click.echo(json.dumps(status_counts(session), indent=2))


@review.command("agreement")
def review_agreement() -> None:
    """Cohen's kappa between agronomists, overall, per agronomist and per class."""
    from core.agreement import agreement

    with open_session(settings.database_url) as session:
        click.echo(json.dumps(agreement(session), indent=2))


@review.command("audit-labels")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Training photos laid out like ../shared/data (default MHOGO_TRAIN_DATA_DIR), imported as curated "
                   "labels first.")  # fmt: skip
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True)
def review_audit_labels(data: Path | None, folds: int) -> None:
    """Find training labels that are probably wrong (cleanlab on out-of-fold probabilities of a classifier on the
    champion's features) and put those photos in the queue."""
    from core.blobs import BlobStore
    from core.label_audit import audit_labels
    from core.labels import import_curated

    blobs = BlobStore(settings.blob_dir)
    with open_session(settings.database_url) as session:
        folder = data or settings.TRAIN_DATA_DIR
        if folder is not None:
            click.echo(f"{import_curated(session, blobs, folder)} photos imported as curated labels", err=True)
        found = audit_labels(session, settings, blobs, folds)
    click.echo(f"{found.checked} training photos checked, {len(found.flagged)} probably mislabelled, in the queue")


COMMANDS = (review,)

"""`mhogo retention run [--dry-run]`: delete now what is past its time (what beat has the events worker do every
MHOGO_RETENTION_INTERVAL_S), or count what would go; the rules are core.retention's."""

from __future__ import annotations

from collections import Counter

import click

from core.config import settings
from core.db import open_session


@click.group("retention")
def retention_group() -> None:
    """What mhogo deletes when (README "Retention"): old photos without a trusted label, old jobs, phone events,
    metric points, models that never served, finished runs' files."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted now; change nothing.")
def retention_run(dry_run: bool) -> None:
    """Delete everything past its time, a batch at a time; print what went (or, with --dry-run, what would)."""
    import redis

    from core import retention
    from core.blobs import BlobStore
    from mhogo.cli.db import require_deployment
    from schemas.tables import utcnow

    namespace = require_deployment()
    now = utcnow()
    blobs = BlobStore(settings.blob_dir)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        if dry_run:
            with open_session(settings.database_url) as session:
                counts = retention.pending(session, settings, now, client, namespace, blobs)
        else:
            counts = retention.run_all(lambda: open_session(settings.database_url), blobs, settings, now, client,
                                       namespace)  # fmt: skip
        with open_session(settings.database_url) as session:
            counts["photos_kept_labelled"] = retention.kept_photos(session, settings, now)
    finally:
        client.close()
    click.echo("would delete (dry run, nothing changed):" if dry_run else "deleted:")
    echo_counts(counts, retention.describe(settings), retention.KINDS)


def echo_counts(counts: Counter[str], described: dict[str, str], always: tuple[str, ...]) -> None:
    """One line per count: every kind retention deletes (a zero says it is within its time), the rest when not 0."""
    for name, what in described.items():
        if counts[name] or name in always:
            click.echo(f"  {name:<21}{counts[name]:>10}  {what}")


COMMANDS = (retention_group,)

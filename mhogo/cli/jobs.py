"""`mhogo jobs`, `mhogo sweep` and `mhogo stats`: the photo jobs as operators handle them: the dead letters and
another try for them, the sweeper run by hand, and counts by status and reason."""

from __future__ import annotations

import json

import click

from core.config import settings
from core.db import open_session


@click.group("jobs")
def jobs_group() -> None:
    """Jobs that failed for good (the dead letters), and giving them another try."""


@jobs_group.command("failed")
@click.option("--limit", type=int, default=100, show_default=True)
def jobs_failed(limit: int) -> None:
    """Failed jobs, newest first: id, when, and why."""
    from core import jobs

    with open_session(settings.database_url) as session:
        for job in jobs.failed_jobs(session, limit):
            click.echo(f"{job.id}  {job.updated_at:%Y-%m-%d %H:%M:%S}  {job.reason}")


@jobs_group.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed job (up to 10,000).")
def jobs_requeue(job_ids: tuple[str, ...], all_failed: bool) -> None:
    """Send failed jobs through the pipeline again, once their cause is fixed; prints each job requeued."""
    from core import jobs
    from core.celery_app import app
    from core.publisher import Publisher, enqueue_photo
    from mhogo.cli.db import require_deployment

    require_deployment()
    publisher = Publisher(app)
    with open_session(settings.database_url) as session:
        ids = [job.id for job in jobs.failed_jobs(session, 10_000)] if all_failed else list(job_ids)
        for job_id in ids:
            job = jobs.requeue(session, job_id)
            if job is None:
                click.echo(f"{job_id}: not a failed job with its photo, left as it is", err=True)
                continue
            queued = enqueue_photo(publisher, session, job)
            click.echo(f"{job_id}  {'queued' if queued else 'received (the sweeper will queue it)'}")


@click.command()
def sweep() -> None:
    """Enqueue now every job that is waiting for the queue, delete the orphan photos of one folder of the blob store,
    and take back the deployment's messages waiting outside its queues (as the periodic sweep does)."""
    import redis

    from core import strays
    from core.blobs import BlobStore
    from core.celery_app import app
    from core.publisher import Publisher
    from core.sweeper import sweep_once
    from mhogo.cli.db import require_deployment

    namespace = require_deployment()
    publisher = Publisher(app)
    counts = sweep_once(lambda: open_session(settings.database_url), publisher, settings, BlobStore(settings.blob_dir))
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    with open_session(settings.database_url) as session:
        counts |= strays.take_back(session, client, namespace, publisher, settings.VISIBILITY_TIMEOUT_S)
    client.close()
    click.echo(json.dumps(counts))


@click.command()
@click.option("--hours", type=float, default=24.0, show_default=True, help="Look at jobs created this far back.")
def stats(hours: float) -> None:
    """Jobs by status, and rejections by reason code (too_dark, not_cassava_leaf, ...), as one JSON object."""
    from datetime import timedelta

    from core import jobs
    from schemas.tables import utcnow

    with open_session(settings.database_url) as session:
        click.echo(json.dumps(jobs.outcome_counts(session, utcnow() - timedelta(hours=hours))))


COMMANDS = (jobs_group, sweep, stats)

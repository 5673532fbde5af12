"""The `mhogo` command. Each subcommand imports what it needs when it runs, so `mhogo devices` never loads torch."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from core.config import settings

# Processes per worker by queue (None: one per core). Inference is CPU bound: one process per core, each with
# cores / processes math threads, is the limit bench/limit.py measures. The photos queue only sweeps now.
WORKER_CONCURRENCY: dict[str, int | None] = {"photos": 1, "inference": None, "events": 1, "retraining": 1}
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@click.group()
def main() -> None:
    """mhogo: cassava leaf disease diagnosis from farmers' photos."""


@main.command()
@click.option("--demo", is_flag=True, help="Once the stack is up, send the sample photos and print the results.")
@click.option("--once", is_flag=True, help="With --demo: stop the stack when the demo is done.")
@click.option("--verbose", "-v", is_flag=True, help="Every service logs at INFO (default: warnings only).")
def up(demo: bool, once: bool, verbose: bool) -> None:
    """Run the whole stack in the foreground: Redis, API, one worker per queue, beat, Flower. Ctrl-C stops it."""
    from core.db import get_engine, init_db
    from core.stack import Stack, wait_until_healthy

    init_db(get_engine(settings.database_url))
    stack = Stack(settings)
    if not verbose and "MHOGO_LOG_LEVEL" not in os.environ:
        stack.env["MHOGO_LOG_LEVEL"] = "WARNING"
    if "MHOGO_LOG_JSON" not in os.environ:  # a person reads this terminal; services run elsewhere log JSON
        stack.env["MHOGO_LOG_JSON"] = "false"
    stopping = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        stack.start(explicit_redis_url="MHOGO_REDIS_URL" in os.environ)
        if demo:
            done = threading.Event()
            result: list[int] = []

            def run_demo() -> None:
                from producers.demo import demo_with_new_device

                if wait_until_healthy(settings.public_url):
                    result.append(demo_with_new_device(settings, SAMPLES))
                else:
                    click.echo("the API did not become healthy", err=True)
                    result.append(1)
                done.set()

            threading.Thread(target=run_demo, daemon=True).start()
            code = stack.watch(until=lambda: stopping.is_set() or (once and done.is_set()))
            code = code or (result[0] if result else 0)
        else:
            code = stack.watch(until=stopping.is_set)
    finally:
        stack.stop()
    sys.exit(code)


@main.command()
@click.option("--host", default=None, help="Default: MHOGO_API_HOST.")
@click.option("--port", type=int, default=None, help="Default: MHOGO_API_PORT.")
@click.option("--workers", type=int, default=1, help="uvicorn worker processes.")
def api(host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from core.logs import configure_logging

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="api")
    uvicorn.run(
        "producers.api.app:serve",
        factory=True,
        host=host or settings.API_HOST,
        port=port or settings.API_PORT,
        workers=workers,
        proxy_headers=True,
        log_level=settings.LOG_LEVEL.lower(),
        access_log=settings.LOG_LEVEL.upper() in {"DEBUG", "INFO"},
        log_config=None,  # uvicorn's loggers propagate to our root handler instead of getting handlers of their own
    )


@main.command()
@click.argument("queues", nargs=-1, required=True, type=click.Choice(sorted(WORKER_CONCURRENCY)))
@click.option("--concurrency", "-c", type=int, default=None, help="Processes; default depends on the queue.")
@click.option("--name", default=None, help="Worker node name; default QUEUE@HOSTNAME.")
def worker(queues: tuple[str, ...], concurrency: int | None, name: str | None) -> None:
    """Run a Celery worker consuming QUEUES."""
    from core.logs import configure_logging
    from workers.app import app

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="worker")  # Celery's setup_logging keeps it
    cores = os.cpu_count() or 1
    processes = concurrency or max(WORKER_CONCURRENCY[q] or cores for q in queues)
    # Read by each pool process as it loads its model (workers/inference.py): the processes share the cores.
    app.conf.update(mhogo_math_threads=settings.TORCH_THREADS or max(1, cores // processes))
    if set(queues) == {"retraining"}:  # training yields the cores to serving when they share a machine
        os.nice(settings.RETRAIN_NICE)
    app.worker_main(
        [
            *quiet_when_json(),
            "worker",
            f"--queues={','.join(queues)}",
            f"--hostname={name or '-'.join(queues) + '@%h'}",
            f"--concurrency={processes}",
            *(["--task-events"] if settings.TASK_EVENTS else []),
            "--optimization=fair",
            f"--loglevel={settings.LOG_LEVEL}",
        ]
    )


@main.command()
def beat() -> None:
    """Run Celery beat: the periodic sweeper."""
    from core.logs import configure_logging
    from workers.app import app

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="beat")
    settings.HOME.mkdir(parents=True, exist_ok=True)
    app.start([*quiet_when_json(), "beat", f"--loglevel={settings.LOG_LEVEL}"])


def quiet_when_json() -> list[str]:
    """Celery's banners are text on stdout: with JSON logs they would be the only lines a log shipper cannot read."""
    return ["--quiet"] if settings.LOG_JSON else []


@main.command()
def flower() -> None:
    """Run Flower with basic auth (MHOGO_FLOWER_USER / MHOGO_FLOWER_PASSWORD) and persistent state."""
    if settings.FLOWER_PASSWORD is None:
        raise click.UsageError("set MHOGO_FLOWER_PASSWORD: Flower never runs without a password")
    settings.HOME.mkdir(parents=True, exist_ok=True)
    # In Flower's environment, not on its command line, where every user of the machine could read it (ps).
    os.environ["FLOWER_BASIC_AUTH"] = f"{settings.FLOWER_USER}:{settings.FLOWER_PASSWORD.get_secret_value()}"
    argv = [
        sys.executable, "-m", "celery", "--app=workers.app", "flower",
        f"--port={settings.FLOWER_PORT}", "--persistent=True",
        f"--db={settings.HOME / 'flower.db'}", "--state_save_interval=60000", "--purge_offline_workers=300",
        f"--logging={settings.LOG_LEVEL.lower()}",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


@main.command()
@click.option("--api-url", default=None, help="Default: MHOGO_PUBLIC_URL.")
@click.option("--token", envvar="MHOGO_DEMO_TOKEN", default=None, help="A device token; default: register one.")
@click.option("--samples", type=click.Path(exists=True, path_type=Path), default=SAMPLES)
def demo(api_url: str | None, token: str | None, samples: Path) -> None:
    """Send the sample photos through the API and print each diagnosis as it arrives."""
    from producers.demo import demo_with_new_device, run_demo

    if token:
        sys.exit(run_demo(api_url or settings.public_url, token, samples))
    sys.exit(demo_with_new_device(settings, samples, api_url))


@main.group()
def devices() -> None:
    """Device tokens."""


@devices.command("add")
@click.argument("name")
def devices_add(name: str) -> None:
    """Register a device; its token is printed once, as the last line."""
    from sqlmodel import Session

    from core.db import get_engine, init_db
    from core.devices import add_device

    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine) as session:
        device, token = add_device(session, name)
    click.echo(f"device {device.id} '{device.name}' registered; its token (shown only now):", err=True)
    click.echo(token)


@devices.command("list")
def devices_list() -> None:
    from sqlmodel import Session

    from core.db import get_engine, init_db
    from core.devices import list_devices, revoked

    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine) as session:
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
    from sqlmodel import Session

    from core.db import get_engine, init_db
    from core.devices import revoke_device

    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine) as session:
        try:
            device = revoke_device(session, device_id, by, reason)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"device {device.id} '{device.name}': token revoked")


@main.command()
@click.option("--reason", default="asked for by an operator", help="Recorded with the run and the model it makes.")
@click.option("--by", "fired_by", default=lambda: os.environ.get("USER", "operator"), help="Who asks.")
def retrain(reason: str, fired_by: str) -> None:
    """Fire a retraining run now (no cooldown; not while another is open); prints its id. The retraining worker
    builds the dataset from MHOGO_TRAIN_DATA_DIR plus trusted feedback, trains, judges and maybe promotes."""
    from datetime import timedelta

    import redis
    from sqlmodel import Session

    from core.db import get_engine, init_db
    from core.triggers import Firing, fire
    from producers.publisher import Publisher
    from schemas.tables import utcnow
    from workers.app import app

    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine, expire_on_commit=False) as session:
        run = fire(session, redis.Redis.from_url(settings.REDIS_URL), Publisher(app).publish_retrain,
                   Firing("operator", {"reason": reason}), fired_by, timedelta(0), utcnow())  # fmt: skip
    if run is None:
        raise click.ClickException("a retraining run is open already: `mhogo status` shows it")
    click.echo(run.id)


@main.group("jobs")
def jobs_group() -> None:
    """Jobs that failed for good (the dead letters), and giving them another try."""


@jobs_group.command("failed")
@click.option("--limit", type=int, default=100, show_default=True)
def jobs_failed(limit: int) -> None:
    """Failed jobs, newest first: id, when, and why."""
    from sqlmodel import Session

    from core import jobs
    from core.db import get_engine, init_db

    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine) as session:
        for job in jobs.failed_jobs(session, limit):
            click.echo(f"{job.id}  {job.updated_at:%Y-%m-%d %H:%M:%S}  {job.reason}")


@jobs_group.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed job (up to 10,000).")
def jobs_requeue(job_ids: tuple[str, ...], all_failed: bool) -> None:
    """Send failed jobs through the pipeline again, once their cause is fixed; prints each job requeued."""
    from sqlmodel import Session

    from core import jobs
    from core.db import get_engine, init_db
    from producers.publisher import Publisher, enqueue_photo
    from workers.app import app

    engine = get_engine(settings.database_url)
    init_db(engine)
    publisher = Publisher(app)
    with Session(engine, expire_on_commit=False) as session:
        ids = [job.id for job in jobs.failed_jobs(session, 10_000)] if all_failed else list(job_ids)
        for job_id in ids:
            job = jobs.requeue(session, job_id)
            if job is None:
                click.echo(f"{job_id}: not a failed job, left as it is", err=True)
                continue
            queued = enqueue_photo(publisher, session, job)
            click.echo(f"{job_id}  {'queued' if queued else 'received (the sweeper will queue it)'}")


@main.command()
def sweep() -> None:
    """Enqueue now every job that is waiting for the queue."""
    from sqlmodel import Session

    from core.db import get_engine, init_db
    from producers.publisher import Publisher
    from producers.sweeper import sweep_once
    from workers.app import app

    engine = get_engine(settings.database_url)
    init_db(engine)
    click.echo(json.dumps(sweep_once(lambda: Session(engine, expire_on_commit=False), Publisher(app), settings)))


from core import cli_ml  # noqa: E402, F401  (registers train, predict, evaluate, export and models on `main`)


@main.command()
@click.option("--hours", type=float, default=24.0, show_default=True, help="Look at jobs created this far back.")
def stats(hours: float) -> None:
    """Jobs by status, and rejections by reason code (too_dark, not_cassava_leaf, ...), as one JSON object."""
    from datetime import timedelta

    from sqlmodel import Session

    from core import jobs
    from core.db import get_engine, init_db
    from schemas.tables import utcnow

    engine = get_engine(settings.database_url)
    init_db(engine)
    with Session(engine) as session:
        click.echo(json.dumps(jobs.outcome_counts(session, utcnow() - timedelta(hours=hours))))


from core import cli_ops, cli_phone, cli_scenario  # noqa: E402, F401  (status, switches, phone, scenarios)

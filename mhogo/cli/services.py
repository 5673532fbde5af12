"""`mhogo up` and each service it runs on its own: `api`, `worker`, `beat`, `flower`; and `demo`, which sends the
sample photos to a running API. The same services compose.yaml runs as containers."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from core.config import REPO, settings

# Processes per worker by queue (None: one per core). Inference is CPU bound: one process per core, each with
# cores / processes math threads, is the limit bench/limit.py measures.
WORKER_CONCURRENCY: dict[str, int | None] = {"inference": None, "events": 1, "retraining": 1}
SAMPLES = REPO / "samples"


@click.command()
@click.option("--demo", is_flag=True, help="Once the stack is up, send the sample photos and print the results.")
@click.option("--once", is_flag=True, help="With --demo: stop the stack when the demo is done.")
@click.option("--verbose", "-v", is_flag=True, help="Every service logs at INFO (default: warnings only).")
def up(demo: bool, once: bool, verbose: bool) -> None:
    """Run the whole stack in the foreground: Redis, API, one worker per queue, beat, Flower. Ctrl-C stops it."""
    from mhogo.cli.db import require_deployment, upgrade_database, where
    from mhogo.stack import Stack, wait_until_healthy

    click.echo(f"database {where()} at revision {upgrade_database()}")  # before any service starts on it
    namespace = require_deployment()
    click.echo(f"deployment {namespace.deployment}: every key it keeps in Redis is under {namespace.prefix}")
    stack = Stack(settings, namespace=namespace)
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


@click.command()
@click.option("--host", default=None, help="Default: MHOGO_API_HOST.")
@click.option("--port", type=int, default=None, help="Default: MHOGO_API_PORT.")
@click.option("--workers", type=int, default=1, help="uvicorn worker processes.")
def api(host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from core.logs import configure_logging
    from mhogo.cli.db import require_deployment

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="api")
    require_deployment()  # each uvicorn process checks again as it makes the app (producers.api.app)
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


@click.command()
@click.argument("queues", nargs=-1, required=True, type=click.Choice(sorted(WORKER_CONCURRENCY)))
@click.option("--concurrency", "-c", type=int, default=None, help="Processes; default depends on the queue.")
@click.option("--name", default=None, help="Worker node name; default QUEUE@HOSTNAME.")
def worker(queues: tuple[str, ...], concurrency: int | None, name: str | None) -> None:
    """Run a Celery worker consuming QUEUES."""
    from core.logs import configure_logging
    from mhogo.cli.db import require_deployment
    from workers.app import app

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="worker")  # Celery's setup_logging keeps it
    require_deployment()  # only this deployment's queues: the app is bound before it connects
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


@click.command()
def beat() -> None:
    """Run Celery beat: the periodic sweeper and the metrics tick."""
    from core.logs import configure_logging
    from mhogo.cli.db import require_deployment
    from workers.app import app

    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, service="beat")
    require_deployment()
    settings.HOME.mkdir(parents=True, exist_ok=True)
    app.start([*quiet_when_json(), "beat", f"--loglevel={settings.LOG_LEVEL}"])


def quiet_when_json() -> list[str]:
    """Celery's banners are text on stdout: with JSON logs they would be the only lines a log shipper cannot read."""
    return ["--quiet"] if settings.LOG_JSON else []


@click.command()
def flower() -> None:
    """Run Flower with basic auth (MHOGO_FLOWER_USER / MHOGO_FLOWER_PASSWORD) on every page, read-only (no task can be
    run through it), on MHOGO_FLOWER_HOST, with persistent state."""
    from mhogo.cli.db import require_deployment

    if settings.FLOWER_PASSWORD is None:
        raise click.UsageError("set MHOGO_FLOWER_PASSWORD: Flower never runs without a password")
    # Flower runs in a process of its own (below), whose app binds itself to the deployment named here.
    os.environ["MHOGO_DEPLOYMENT"] = require_deployment().deployment
    settings.HOME.mkdir(parents=True, exist_ok=True)
    # In Flower's environment, not on its command line, where every user of the machine could read it (ps).
    os.environ["FLOWER_BASIC_AUTH"] = f"{settings.FLOWER_USER}:{settings.FLOWER_PASSWORD.get_secret_value()}"
    argv = [
        sys.executable, "-m", "mhogo.flower", "--app=workers.app", "flower", "--read_only=True",
        f"--address={settings.FLOWER_HOST}", f"--port={settings.FLOWER_PORT}", "--persistent=True",
        f"--db={settings.HOME / 'flower.db'}", "--state_save_interval=60000", "--purge_offline_workers=300",
        f"--logging={settings.LOG_LEVEL.lower()}",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


@click.command()
@click.option("--api-url", default=None, help="Default: MHOGO_PUBLIC_URL.")
@click.option("--token", envvar="MHOGO_DEMO_TOKEN", default=None, help="A device token; default: register one.")
@click.option("--samples", type=click.Path(exists=True, path_type=Path), default=SAMPLES)
def demo(api_url: str | None, token: str | None, samples: Path) -> None:
    """Send the sample photos through the API and print each diagnosis as it arrives."""
    from producers.demo import demo_with_new_device, run_demo

    if token:
        sys.exit(run_demo(api_url or settings.public_url, token, samples))
    sys.exit(demo_with_new_device(settings, samples, api_url))


COMMANDS = (up, api, worker, beat, flower, demo)

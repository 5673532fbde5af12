"""Benchmark 4, the upload API: durable uploads per second with the workers stopped.

    .venv/bin/python bench/upload_api.py --photos ../shared/data [--database sqlite|postgresql] [--rounds 3]

Real photos from --photos, scaled and compressed to about 50 KB each (a phone's upload size on 2G), each upload
with a new Idempotency-Key and new bytes (a JPEG comment with the key), from many device tokens, through the
production API (`mhogo api --workers N`, one process per core), per-device rate limits on. Durable means what the
API promises with its 202: the photo's bytes are on disk and its job row committed before the answer (and the job
sent to Redis). Afterwards the database must hold exactly one job per 202, each with its blob on disk.

Prints and writes (bench/results/upload-api-DATABASE.json), per round and as the median of the rounds: uploads per
second, latency p50 / p95 / p99, the CPU per upload of the API, Redis, the database and this client, and the share
of the CPUs the hypervisor took (steal), which explains rounds far below the others.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from PIL import Image
from sqlalchemy import func
from sqlmodel import Session, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import (  # noqa: E402
    cpu_by_service,
    database,
    percentile,
    scratch_home,
    service_processes,
    steal_percent,
    stolen_and_total,
    wait_until,
)
from bench.limit import photos_under  # noqa: E402
from bench.loadgen import Results, Uploads  # noqa: E402
from core.blobs import BlobStore  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import open_database  # noqa: E402
from core.devices import add_device  # noqa: E402
from mhogo.stack import Service, Stack, free_port  # noqa: E402
from schemas.tables import Job  # noqa: E402


def about_50_kb(path: Path, target: int = 50_000) -> bytes:
    """The photo at 800 px on its longer side, at the JPEG quality that comes closest to `target` bytes."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((800, 800))
    best = b""
    for quality in range(95, 20, -5):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        best = buffer.getvalue()
        if len(best) <= target:
            break
    return best


def measure_round(
    uploads: Uploads, processes: dict[str, list[psutil.Process]], connections: int, seconds: float
) -> dict[str, Any]:
    """One window of uploads from `connections` clients, each sending its next upload when the last is answered."""
    cpu_before = cpu_by_service(processes)
    cpu_before["client"] = sum(psutil.Process().cpu_times()[:2])  # this process alone: the services are children
    steal_before = stolen_and_total()
    began = time.monotonic()
    results = uploads.closed_loop(connections, seconds, Results())
    elapsed = time.monotonic() - began
    cpu_after = cpu_by_service(processes)
    cpu_after["client"] = sum(psutil.Process().cpu_times()[:2])
    steal_after = stolen_and_total()
    accepted = results.by_status.get(202, 0)
    return {
        "uploads_per_s": round(accepted / elapsed, 1),
        "answers": {str(k): v for k, v in sorted(results.by_status.items())},
        "latency_ms": {f"p{q}": round(percentile(results.latencies_ms, q), 1) for q in (50, 95, 99)},
        "cpu_ms_per_upload": {
            name: round(1000 * (cpu_after[name] - cpu_before[name]) / max(1, accepted), 2) for name in cpu_before
        },
        "steal_percent": round(steal_percent(steal_before, steal_after), 1),
        "bodies": results.bodies,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "samples")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="the host's speed drifts: the median round counts")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32, help="uploads in flight at all times")
    parser.add_argument("--api-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--devices", type=int, default=500, help="device tokens the uploads are spread over")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    paths = [p for p in photos_under(args.photos) if p.parent.parent.name == "cassava" or p.parent.name != "negatives"]
    jpegs = [about_50_kb(p) for p in paths[:60]]
    sizes = sorted(len(j) for j in jpegs)
    print(f"{len(jpegs)} photos of {sizes[0] // 1000}..{sizes[-1] // 1000} KB (median {sizes[len(sizes) // 2] // 1000} "
          f"KB), {args.devices} devices, {args.connections} connections, {args.api_processes} API processes, "
          f"{args.database}", flush=True)  # fmt: skip

    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    figures: dict[str, Any] = {"database": args.database, "api_processes": args.api_processes,
                               "connections": args.connections, "devices": args.devices,
                               "photo_kb_median": round(sizes[len(sizes) // 2] / 1000, 1)}  # fmt: skip
    with scratch_home("upload-") as tmp, database(args.database, Path(tmp)) as db_url:
        home = Path(tmp)
        port = free_port()
        config = Settings(HOME=home, REDIS_URL=redis_url, DATABASE_URL=db_url, API_PORT=port)
        engine = open_database(db_url)
        with Session(engine) as session:
            tokens = [add_device(session, f"phone-{n}")[1] for n in range(args.devices)]
        log = (home / "stack.log").open("w")
        stack = Stack(config, services=(Service("api", ("api", "--workers", str(args.api_processes))),), out=log)
        stack.env |= {"MHOGO_HOME": str(home), "MHOGO_DATABASE_URL": db_url, "MHOGO_API_PORT": str(port),
                      "MHOGO_REDIS_URL": redis_url, "MHOGO_LOG_LEVEL": "WARNING",
                      "MHOGO_MAX_QUEUE_DEPTH": "1000000"}  # fmt: skip
        api_url = f"http://127.0.0.1:{port}"
        try:
            stack.start(explicit_redis_url=True)
            wait_until(lambda: httpx.get(f"{api_url}/healthz").status_code == 200, 120, "the API")
            uploads = Uploads(api_url, tokens, jpegs)
            warm = uploads.closed_loop(args.connections, args.warmup)  # connections, caches, first pages
            processes = service_processes(stack, args.database)
            rounds = [measure_round(uploads, processes, args.connections, args.seconds) for _ in range(args.rounds)]
            for number, figures_of_round in enumerate(rounds, 1):
                print(f"  round {number}: {figures_of_round['uploads_per_s']:.1f} durable uploads/s; answers "
                      f"{figures_of_round['answers']}; latency {figures_of_round['latency_ms']}; CPU ms per upload "
                      f"{figures_of_round['cpu_ms_per_upload']}; CPU stolen by the host "
                      f"{figures_of_round['steal_percent']} %", flush=True)  # fmt: skip
            rates = [r["uploads_per_s"] for r in rounds]
            figures["uploads_per_s"] = statistics.median(rates)
            figures["rounds"] = rounds
            print(f"  median {figures['uploads_per_s']:.1f} durable uploads/s over {args.rounds} rounds of "
                  f"{args.seconds:.0f} s (min {min(rates):.1f}, max {max(rates):.1f})", flush=True)  # fmt: skip
            bodies = warm.bodies + [body for r in rounds for body in r.pop("bodies")]

            # Durable: every 202 has its job row and its photo on disk.
            job_ids = [json.loads(body)["job_id"] for body in bodies]
            blobs = BlobStore(config.blob_dir)
            with Session(engine) as session:
                total = session.exec(select(func.count()).select_from(Job)).one()
                rows = session.exec(select(Job.id, Job.blob_key)).all()
            on_disk = sum(blobs.exists(key) for _, key in rows)
            known = {job_id for job_id, _ in rows}
            figures["check"] = {"accepted_in_all": len(job_ids), "jobs": total, "blobs_on_disk": on_disk,
                                "accepted_without_job": sum(j not in known for j in job_ids)}  # fmt: skip
            print(f"  check: {figures['check']}", flush=True)
        finally:
            stack.stop()
            log.close()
            engine.dispose()
    out = args.out or REPO / "bench" / "results" / f"upload-api-{args.database}.json"
    out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

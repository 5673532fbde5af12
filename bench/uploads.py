"""Acceptance run against a live stack (`mhogo up`): many real photos uploaded at once, a share of them sent twice
with the same Idempotency-Key (half of those at the same moment), then every job followed to its end.

    .venv/bin/python bench/uploads.py --photos ../shared/data --count 200 \
        --flower-url http://127.0.0.1:5555 --flower-auth operator:PASSWORD

Prints the figures: distinct keys vs jobs created, final statuses, time to finish, upload and end-to-end latency,
and (with Flower) the tasks Flower saw for these jobs, with their names and the size of their arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlmodel import Session, select

from core.config import settings
from core.db import open_database
from core.devices import add_device
from producers.phone import MEDIA_TYPES as MEDIA
from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import Job


def photos_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MEDIA)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-url", default=settings.public_url)
    parser.add_argument("--photos", type=Path, default=Path("../shared/data"))
    parser.add_argument("--count", type=int, default=200, help="distinct photos (keys)")
    parser.add_argument("--repeat-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for every job to end")
    parser.add_argument("--flower-url", default=None)
    parser.add_argument("--flower-auth", default=None, help="USER:PASSWORD")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pool = photos_under(args.photos)
    chosen = [pool[i % len(pool)] for i in range(args.count)]
    run_id = f"{time.time():.0f}"
    keys = [hashlib.sha256(f"{run_id}/{i}/{p}".encode()).hexdigest() for i, p in enumerate(chosen)]
    repeated = rng.sample(range(args.count), round(args.count * args.repeat_fraction))
    together, later = set(repeated[: len(repeated) // 2]), set(repeated[len(repeated) // 2 :])

    engine = open_database(settings.database_url)
    with Session(engine) as session:
        device, token = add_device(session, f"bench-{run_id}")
    client = httpx.Client(base_url=args.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                          limits=httpx.Limits(max_connections=args.threads * 2))  # fmt: skip
    latencies: list[float] = []
    lock = threading.Lock()

    def send(index: int) -> str:
        path = chosen[index]
        headers = {"Idempotency-Key": keys[index], "Content-Type": MEDIA[path.suffix.lower()]}
        start = time.perf_counter()
        response = client.post("/v1/photos", content=path.read_bytes(), headers=headers)
        with lock:
            latencies.append((time.perf_counter() - start) * 1000)
        if response.status_code != 202:
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
        return str(response.json()["job_id"])

    sends = list(range(args.count)) + sorted(together)  # the "together" repeats race their first send
    rng.shuffle(sends)
    print(f"uploading {args.count} photos ({len(repeated)} of them twice: {len(together)} at the same moment, "
          f"{len(later)} later) to {args.api_url}", flush=True)  # fmt: skip
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as executor:
        job_by_send = list(executor.map(send, sends))
        job_by_send += list(executor.map(send, sorted(later)))
    uploaded = time.monotonic() - started
    returned_ids = set(job_by_send)
    print(f"uploaded {len(sends) + len(later)} requests in {uploaded:.1f} s; waiting for every job to end", flush=True)

    deadline = time.monotonic() + args.timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        with Session(engine) as session:
            rows = session.exec(select(Job).where(Job.device_id == device.id)).all()
        statuses = {row.id: str(row.status) for row in rows}
        done = sum(s in TERMINAL_STATUSES for s in statuses.values())
        print(f"\r  {done}/{len(statuses)} jobs ended", end="", flush=True)
        if done == len(statuses):
            break
        time.sleep(0.5)
    print(flush=True)
    with Session(engine) as session:
        rows = session.exec(select(Job).where(Job.device_id == device.id)).all()
    end_to_end = [(row.finished_at - row.created_at).total_seconds() * 1000 for row in rows if row.finished_at]
    finished_by = max((row.finished_at for row in rows if row.finished_at), default=None)
    first_created = min(row.created_at for row in rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.status)] = counts.get(str(row.status), 0) + 1

    summary = {
        "distinct_keys": args.count,
        "requests": len(sends) + len(later),
        "job_ids_returned": len(returned_ids),
        "jobs_in_database": len(rows),
        "statuses": counts,
        "not_ended": sum(s not in TERMINAL_STATUSES for s in statuses.values()),
        "seconds_first_upload_to_last_result": round((finished_by - first_created).total_seconds(), 1)
        if finished_by
        else None,
        "upload_ms_p50": round(percentile(latencies, 50), 1),
        "upload_ms_p95": round(percentile(latencies, 95), 1),
        "end_to_end_ms_p50": round(percentile(end_to_end, 50), 1),
        "end_to_end_ms_p95": round(percentile(end_to_end, 95), 1),
    }
    if args.flower_url:
        summary["flower"] = flower_report(args.flower_url, args.flower_auth, {row.id for row in rows})
    print(json.dumps(summary, indent=2))
    ok = summary["jobs_in_database"] == args.count == summary["job_ids_returned"] and summary["not_ended"] == 0
    print("OK" if ok else "NOT OK", flush=True)
    return 0 if ok else 1


def flower_report(url: str, auth: str | None, job_ids: set[str]) -> dict[str, object]:
    user, _, password = (auth or ":").partition(":")
    tasks = httpx.get(f"{url}/api/tasks", params={"limit": 100000}, auth=(user, password), timeout=30).json()
    mine = [t for t in tasks.values() if any(job_id in str(t.get("args")) for job_id in job_ids)]
    by_name: dict[str, int] = {}
    for task in mine:
        by_name[task["name"]] = by_name.get(task["name"], 0) + 1
    sizes = [len(str(task.get("args"))) for task in mine]
    jobs_seen = {job_id for job_id in job_ids if any(job_id in str(t.get("args")) for t in mine)}
    return {
        "tasks": len(mine),
        "by_name": by_name,
        "jobs_seen": len(jobs_seen),
        "largest_args_chars": max(sizes, default=0),
        "example_args": str(next((t["args"] for t in mine if t["name"] == "mhogo.inference.diagnose"), None)),
    }


if __name__ == "__main__":
    sys.exit(main())

"""Faults at full size, on a stack of its own (API + one Celery worker, SQLite, the Redis on localhost db 10).
Prints (and writes as JSON) photos sent, jobs, results, duplicates, lost, failed; with --kill, also how many kills hit
a process in the middle of a photo and how many outcomes the worker stored twice or never (from its log).

    # photos sent by the reference phone client through a proxy that cuts 30 % of connections mid-transfer
    .venv/bin/python bench/faults.py --photos ../shared/data --count 500 --cut 0.3
    # photos uploaded while pool processes, each in the middle of a photo, are killed with SIGKILL ten times
    .venv/bin/python bench/faults.py --photos ../shared/data --count 1000 --kill 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import os  # noqa: E402

os.environ.setdefault("MHOGO_REDIS_URL", "redis://127.0.0.1:6379/10")
os.environ.setdefault("MHOGO_FLOWER_PASSWORD", "bench")

from collections import Counter  # noqa: E402
from collections.abc import Mapping  # noqa: E402

import redis  # noqa: E402

from ml.data import IMAGE_SUFFIXES  # noqa: E402
from schemas.statuses import TERMINAL_STATUSES  # noqa: E402
from tests.integration.conftest import live_stack  # noqa: E402
from tests.integration.test_faults import send_through  # noqa: E402
from tests.utils.faultproxy import FaultProxy  # noqa: E402
from tests.utils.processes import ensure_default_redis  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "samples")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--cut", type=float, default=0.3)
    parser.add_argument("--resumable-above", type=int, default=32 * 1024,
                        help="Photos over this many bytes go by resumable upload (tus), in 16 KiB chunks.")  # fmt: skip
    parser.add_argument("--kill", type=int, default=0,
                        help="Instead of the proxy: SIGKILL a busy pool process this often.")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="Default: bench/results/faults[-kill].json")
    args = parser.parse_args()
    if args.kill:
        return kill_run(args)
    photos = photos_to_send(args.photos, args.count)
    with tempfile.TemporaryDirectory(prefix="mhogo-faults-") as tmp:
        home = Path(tmp)
        print(
            f"{len(photos)} photos ({len(set(photos))} distinct files) through a proxy cutting {args.cut:.0%} "
            "of connections"
        )
        with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", os.environ["MHOGO_REDIS_URL"]) as stack:
            started = time.monotonic()
            with FaultProxy(int(stack.api_url.rsplit(":", 1)[1]), cut=args.cut) as proxy:
                done, jobs = send_through(stack, proxy, photos, home / "outbox", args.resumable_above)
            seconds = time.monotonic() - started
    keys = Counter(job.idempotency_key for job in jobs)
    figures = {
        "photos_sent": len(photos),
        "jobs": len(jobs),
        "results_on_the_phone": len(done),
        "duplicates": sum(n - 1 for n in keys.values()),
        "lost": len(photos) - len(keys),
        "jobs_by_status": dict(Counter(str(job.status) for job in jobs)),
        "by_resumable_upload": sum(job.size_bytes > args.resumable_above for job in jobs),
        "connections": proxy.stats["connections"],
        "cut_in_request": proxy.stats["cut_request"],
        "cut_in_answer": proxy.stats["cut_response"],
        "cut_share": round((proxy.stats["cut_request"] + proxy.stats["cut_response"]) / proxy.stats["connections"], 3),
        "seconds": round(seconds, 1),
    }
    report(figures, args.out or REPO / "bench" / "results" / "faults.json")
    ok = figures["duplicates"] == 0 and figures["lost"] == 0 and len(done) == len(photos)
    return 0 if ok else 1


def photos_to_send(folder: Path, count: int) -> list[Path]:
    """`count` photos from `folder`, its files repeated in turn; the bench's Redis database emptied for them."""
    pool = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    ensure_default_redis()
    redis.Redis.from_url(os.environ["MHOGO_REDIS_URL"]).flushdb()
    return [pool[i % len(pool)] for i in range(count)]


def report(figures: Mapping[str, object], out: Path) -> None:
    for name, value in figures.items():
        print(f"{name:>22}: {value}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))


def kill_run(args: argparse.Namespace) -> int:
    import random
    from concurrent.futures import ThreadPoolExecutor

    from sqlmodel import Session, col, select

    from schemas.tables import Job
    from tests.integration.test_faults import kill_busy_pool_processes, landed_mid_task, upload
    from tests.utils.pool import stored_outcomes, times_stored

    photos = photos_to_send(args.photos, args.count)
    with tempfile.TemporaryDirectory(prefix="mhogo-kills-") as tmp:
        home = Path(tmp)
        print(f"{len(photos)} photos while busy worker pool processes are killed {args.kill} times")
        with live_stack(home, f"sqlite:///{home / 'mhogo.db'}", os.environ["MHOGO_REDIS_URL"]) as stack:
            started = time.monotonic()
            ids: list[str] = []
            with ThreadPoolExecutor(1) as uploader:
                uploading = uploader.submit(upload, stack, stack.new_token("bench"), photos, ids)
                kills = kill_busy_pool_processes(stack, ids, uploading, args.kill, random.Random(11),
                                                 pause_s=(2.0, 6.0), give_up_s=1800)  # fmt: skip
                uploading.result()

            def rows() -> list[Job]:
                with Session(stack.engine) as session:
                    return list(session.exec(select(Job).where(col(Job.id).in_(ids))).all())

            while any(j.status not in TERMINAL_STATUSES for j in rows()) and time.monotonic() - started < 1800:
                time.sleep(1.0)
            jobs = rows()
            alive = stack.processes[0].poll() is None
            seconds = time.monotonic() - started
            time.sleep(1.0)  # the last outcome's log line follows its commit
            stored = times_stored(home / "worker.log", set(ids))
            landed = landed_mid_task(stack, kills, stored_outcomes(home / "worker.log", set(ids)))
    keys = Counter(job.idempotency_key for job in jobs)
    figures = {
        "photos_sent": len(photos),
        "kills": len(kills),
        "kills_mid_photo": len(landed),
        "jobs": len(jobs),
        "results": sum(j.status in ("classified", "rejected") for j in jobs),
        "failed": sum(j.status == "failed" for j in jobs),
        "stuck": sum(j.status not in TERMINAL_STATUSES for j in jobs),
        "duplicates": sum(n - 1 for n in keys.values()),
        "lost": len(photos) - len(keys),
        "stored_twice": sum(n > 1 for n in stored.values()),
        "never_stored": sum(n == 0 for n in stored.values()),
        "worker_alive": alive,
        "seconds": round(seconds, 1),
    }
    report(figures, args.out or REPO / "bench" / "results" / "faults-kill.json")
    ok = figures["results"] == len(photos) and not figures["duplicates"] and not figures["lost"]
    return 0 if ok and not figures["stored_twice"] and not figures["never_stored"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Scale out: a second worker group, with another host name and its own MHOGO_HOME, on the same Redis and PostgreSQL,
adds its capacity with no change but those two URLs.

    .venv/bin/python bench/scale_out.py --photos ../shared/data [--seconds 30]

The stack is the API and a PostgreSQL database, the Redis on 127.0.0.1:6379 (its own database number). Group A is
`mhogo worker inference -c 1 --name inference@machine-a`, pinned to core 0; group B the same with
`--name inference@machine-b`, pinned to core 1, with a home of its own whose blob folder is group A's (as an NFS
mount would be). Photos are kept waiting in the queue (saturation) and the finished-per-second rate is measured with
group A alone, then with both. The ratio is what the second group added; 2.0 would be all of its core, and the API,
Redis and PostgreSQL take their share of the same two cores here. Writes bench/results/scale-out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlmodel import Session

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import Counter, database, saturate, scratch_home, wait_until  # noqa: E402
from bench.limit import photos_under  # noqa: E402
from bench.loadgen import Uploads  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import open_database  # noqa: E402
from core.devices import add_device  # noqa: E402
from core.namespace import resolve  # noqa: E402
from mhogo.stack import Service, Stack, free_port  # noqa: E402


def start_group(name: str, core: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", str(core), sys.executable, "-m", "mhogo", "worker", "inference", "-c", "1",
               "--name", f"inference@{name}"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "samples")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=64)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale-out.json")
    args = parser.parse_args()
    photos = [p.read_bytes() for p in photos_under(args.photos) if p.suffix.lower() in (".jpg", ".jpeg")]
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    figures: dict[str, Any] = {"photos": len(photos), "database": "postgresql"}
    groups: list[subprocess.Popen[bytes]] = []
    with scratch_home("scale-") as tmp, database("postgresql", Path(tmp)) as db_url:
        home_a, home_b = Path(tmp) / "machine-a", Path(tmp) / "machine-b"
        (home_a / "blobs").mkdir(parents=True)
        home_b.mkdir()
        (home_b / "blobs").symlink_to(home_a / "blobs")  # the shared blob store, as an NFS mount would be
        port = free_port()
        config = Settings(HOME=home_a, REDIS_URL=redis_url, DATABASE_URL=db_url, API_PORT=port)
        engine = open_database(db_url)
        with Session(engine) as session:
            tokens = [add_device(session, f"phone-{n}")[1] for n in range(50)]
        common = {"MHOGO_DATABASE_URL": db_url, "MHOGO_REDIS_URL": redis_url, "MHOGO_LOG_LEVEL": "WARNING",
                  "MHOGO_RATE_LIMIT": "", "MHOGO_MAX_QUEUE_DEPTH": "100000"}  # fmt: skip
        env_a = dict(os.environ) | common | {"MHOGO_HOME": str(home_a), "MHOGO_API_PORT": str(port)}
        env_b = dict(os.environ) | common | {"MHOGO_HOME": str(home_b)}
        log = (Path(tmp) / "stack.log").open("w")
        stack = Stack(config, services=(Service("api", ("api",)),), out=log)
        stack.env |= env_a
        api_url = f"http://127.0.0.1:{port}"
        try:
            stack.start(explicit_redis_url=True)
            wait_until(lambda: httpx.get(f"{api_url}/healthz").status_code == 200, 120, "the API")
            uploads = Uploads(api_url, tokens, photos)
            counter = Counter(engine)
            groups.append(start_group("machine-a", 0, env_a, Path(tmp) / "machine-a.log"))
            uploads.send(1)
            wait_until(lambda: counter.finished >= 1, 300, "group A's first result")
            print(f"1/2 group A alone (inference@machine-a, core 0): {args.seconds:.0f} s after {args.warmup:.0f} s",
                  flush=True)  # fmt: skip
            alone, _ = saturate(uploads, counter, args.seconds, args.warmup, args.backlog)
            print(f"    {alone:.2f} photos/s", flush=True)

            groups.append(start_group("machine-b", 1, env_b, Path(tmp) / "machine-b.log"))
            print(f"2/2 groups A and B (inference@machine-b, core 1, its own home): {args.seconds:.0f} s after "
                  f"{args.warmup:.0f} s", flush=True)  # fmt: skip
            both, _ = saturate(uploads, counter, args.seconds, args.warmup + 10, args.backlog)
            print(f"    {both:.2f} photos/s", flush=True)
            figures |= {"group_a_photos_per_s": round(alone, 2), "groups_a_and_b_photos_per_s": round(both, 2),
                        "ratio": round(both / alone, 3)}  # fmt: skip
            inspect = subprocess.run(  # remote control is in the deployment's namespace, as its queues are
                [sys.executable, "-m", "celery", "--app=workers.app", "inspect", "stats", "--json"],
                env=env_a | {"MHOGO_DEPLOYMENT": resolve(engine, None).deployment},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            stats = json.loads(inspect.stdout or "{}") if inspect.returncode == 0 else {}
            figures["tasks_by_worker"] = {node: sum(s.get("total", {}).values()) for node, s in stats.items()}
            print(f"    tasks run by each worker node: {figures['tasks_by_worker']}", flush=True)
            counter.stop()
        finally:
            for group in groups:
                group.terminate()
            for group in groups:
                group.wait(timeout=60)
            stack.stop()
            log.close()
            engine.dispose()
    print(json.dumps(figures, indent=1))
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

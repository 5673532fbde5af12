"""Benchmark: a phone's photo while large PNGs arrive (issue 23: six 7000x7000 PNGs delayed a normal photo's answer
from 0.13 to 5.7 s, each checked in the API's one intake writer).

    .venv/bin/python bench/intake_isolation.py --photos ../shared/data [--huge 6] [--seconds 15]

One API process (`mhogo api --workers 1`: one intake writer), workers stopped, SQLite, rate limits off. In one run,
two windows of the same length: normal photos alone (about 50 KB JPEGs, as the farmer's app sends them, from
--connections clients that each send the next when the last is answered), then the same while --huge clients send
large PNGs one after another (--huge-side square, 4800 px by default: 23 MP, just under the cap, as a camera's
full-resolution mode or a bomb makes them). Each upload has a new Idempotency-Key and new bytes. Prints the normal
photos' acceptance latency (request sent to 202 read) p50 / p95 in each window and the ratio with / without, and
writes it to bench/results/intake-isolation.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from PIL import Image
from sqlmodel import Session

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import database, percentile, scratch_home, wait_until  # noqa: E402
from bench.limit import photos_under  # noqa: E402
from bench.loadgen import Results, upload_request  # noqa: E402
from bench.upload_api import about_50_kb  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import open_database  # noqa: E402
from core.devices import add_device  # noqa: E402
from mhogo.stack import Service, Stack, free_port  # noqa: E402


def large_png(side: int, seed: int) -> bytes:
    """A side x side RGB PNG of smooth gradients: a few hundred KB on the wire, every pixel decoded to check it."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = (seed * 37) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def png_request(host: str, token: str, png: bytes, key: str) -> bytes:
    head = (f"POST /v1/photos HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: image/png\r\n"
            f"Idempotency-Key: {key}\r\nContent-Length: {len(png)}\r\n\r\n")  # fmt: skip
    return head.encode() + png


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
    return int(head[9:12]), await reader.readexactly(length)


async def client(port: int, next_request: Any, results: Results, until: float) -> None:
    """One connection: the next request as soon as the last is answered, until `until` (monotonic)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            request = next_request()
            started = time.monotonic()
            results.sent += 1
            status, body = await exchange(reader, writer, request)
            results.record(status, started, body)
    finally:
        writer.close()


def window(port: int, normal: Any, huge: Any, connections: int, huge_connections: int, seconds: float,
           lead: float) -> tuple[Results, Results]:  # fmt: skip
    """Normal photos for `seconds`; with `huge_connections`, the large PNGs start `lead` seconds before them and go
    on until they end."""
    normals, larges = Results(), Results()

    async def run() -> None:
        huge_until = time.monotonic() + lead + seconds
        large = asyncio.gather(*(client(port, huge, larges, huge_until) for _ in range(huge_connections)))
        if huge_connections:
            await asyncio.sleep(lead)
        await asyncio.gather(*(client(port, normal, normals, time.monotonic() + seconds) for _ in range(connections)))
        await large

    asyncio.run(run())
    return normals, larges


def figures(results: Results) -> dict[str, Any]:
    latencies = results.latencies_ms
    return {"uploads": results.sent, "answers": {str(k): v for k, v in sorted(results.by_status.items())},
            "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "samples")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each window")
    parser.add_argument("--connections", type=int, default=2, help="normal photos in flight")
    parser.add_argument("--huge", type=int, default=6, help="large PNGs in flight in the second window")
    parser.add_argument("--huge-side", type=int, default=4800)
    parser.add_argument("--lead", type=float, default=2.0, help="seconds the large PNGs start before the photos")
    parser.add_argument("--redis-db", type=int, default=15, help="flushed first: one no test run uses")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "intake-isolation.json")
    args = parser.parse_args()

    jpegs = [about_50_kb(p) for p in photos_under(args.photos)[:40]]
    pngs = [large_png(args.huge_side, seed) for seed in range(args.huge)]
    print(f"{len(jpegs)} photos of about 50 KB; {args.huge} PNGs of {args.huge_side}x{args.huge_side} "
          f"({args.huge_side**2 / 1e6:.1f} MP, {len(pngs[0]) // 1000} KB); {args.connections} photos in flight; "
          f"windows of {args.seconds:.0f} s", flush=True)  # fmt: skip
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    with scratch_home("isolation-") as tmp, database("sqlite", Path(tmp)) as db_url:
        home, port = Path(tmp), free_port()
        config = Settings(HOME=home, REDIS_URL=redis_url, DATABASE_URL=db_url, API_PORT=port)
        engine = open_database(db_url)
        with Session(engine) as session:
            phones = [add_device(session, f"phone-{n}")[1] for n in range(20)]
            cameras = [add_device(session, f"camera-{n}")[1] for n in range(args.huge)]
        log = (home / "stack.log").open("w")
        stack = Stack(config, services=(Service("api", ("api", "--workers", "1")),), out=log)
        stack.env |= {"MHOGO_HOME": str(home), "MHOGO_DATABASE_URL": db_url, "MHOGO_API_PORT": str(port),
                      "MHOGO_REDIS_URL": redis_url, "MHOGO_LOG_LEVEL": "WARNING", "MHOGO_MAX_QUEUE_DEPTH": "1000000",
                      "MHOGO_RATE_LIMIT": "", "MHOGO_IP_RATE_LIMIT": "", "PYTHONPATH": str(REPO)}  # fmt: skip
        count, host = itertools.count(), f"127.0.0.1:{port}"

        def normal() -> bytes:
            n = next(count)
            return upload_request(host, phones[n % len(phones)], jpegs[n % len(jpegs)], uuid.uuid4().hex)

        def huge() -> bytes:
            n = next(count)
            return png_request(host, cameras[n % len(cameras)], pngs[n % len(pngs)], uuid.uuid4().hex)

        try:
            stack.start(explicit_redis_url=True)
            wait_until(lambda: httpx.get(f"http://{host}/healthz").status_code == 200, 120, "the API")
            window(port, normal, huge, args.connections, 0, 3.0, 0)  # warm-up: connections, caches, first pages
            alone, _ = window(port, normal, huge, args.connections, 0, args.seconds, 0)
            beside, larges = window(port, normal, huge, args.connections, args.huge, args.seconds, args.lead)
        finally:
            stack.stop()
            log.close()
            engine.dispose()
    report = {"huge": args.huge, "huge_side": args.huge_side, "connections": args.connections,
              "seconds": args.seconds, "alone": figures(alone), "beside_large_pngs": figures(beside),
              "large_pngs": figures(larges)}  # fmt: skip
    a, b = report["alone"], report["beside_large_pngs"]
    report["ratio_p50"] = round(b["p50_ms"] / a["p50_ms"], 2)
    report["ratio_p95"] = round(b["p95_ms"] / a["p95_ms"], 2)
    print(f"  normal photos alone:             p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms ({a['uploads']} uploads, "
          f"answers {a['answers']})", flush=True)  # fmt: skip
    print(f"  beside {args.huge} large PNGs in flight: p50 {b['p50_ms']} ms, p95 {b['p95_ms']} ms ({b['uploads']} "
          f"uploads, answers {b['answers']})", flush=True)  # fmt: skip
    print(f"  ratio with / without: p50 {report['ratio_p50']}x, p95 {report['ratio_p95']}x", flush=True)
    large = report["large_pngs"]
    print(f"  the large PNGs: {large['uploads']} sent, answers {large['answers']}, p50 {large['p50_ms']} ms",
          flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

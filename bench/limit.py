"""Benchmark 1, the limit: what the hardware can do with no queue, no HTTP and no database. One process per core,
each in a plain loop over the real photos: decode, prepare (orientation, scale, brightness), quality gate, the served
model (in the serving runtime, MHOGO_SERVING_RUNTIME) with its leaf gate: `ml.diagnose.examine`, the very function
the inference task calls. Photos per second, per process and in all.

    .venv/bin/python bench/limit.py --photos ../shared/data [--procs 2] [--seconds 30] [--model FILE]

Each process has one math thread, loads the model once, holds the photos' bytes in memory (reading them is not
the work measured), warms up, waits for the others, then counts photos for --seconds. `measure_limit` is also
called by the end-to-end benchmark, so both figures come from one run on the same cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def photos_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


@dataclass(frozen=True)
class LimitResult:
    procs: int
    seconds: float
    photos: int
    photos_per_s: float
    per_process: list[float]
    stage_ms: dict[str, float]  # mean CPU-side milliseconds per photo of each stage, over all processes
    outcomes: dict[str, int]  # classified, and rejected by reason


def serving_classifier(model: Path, runtime: str, threads: int) -> Any:
    """The model as the inference workers serve it: its ONNX build (shipped beside it, or made now) or eager torch."""
    from core.config import settings
    from core.serving import is_shipped, make_build, prebuilt_path
    from ml.checkpoint import load_checkpoint
    from ml.files import file_sha256

    if runtime == "torch":
        import torch

        from ml.predictor import Predictor

        torch.set_num_threads(threads)
        return Predictor(load_checkpoint(model))
    from ml.phone_build import PhoneBuild

    build, sha256 = prebuilt_path(model, runtime), file_sha256(model)
    if not is_shipped(build, sha256):
        build = Path(tempfile.mkdtemp(prefix="mhogo-limit-")) / f"model.{runtime}.onnx"
        make_build(load_checkpoint(model), sha256, runtime, build, settings.quality_thresholds,
                   settings.calibration_dir, settings.MAX_IMAGE_PIXELS)  # fmt: skip
    return PhoneBuild(build, threads)


def _worker(paths: list[str], model: str, runtime: str, seconds: float, start: Any, out: Any) -> None:
    from core.config import settings
    from ml.diagnose import examine

    classifier = serving_classifier(Path(model), runtime, threads=1)
    limits = settings.quality_thresholds
    photos = [Path(p).read_bytes() for p in paths]
    stage: dict[str, float] = {"decode": 0.0, "prepare": 0.0, "model": 0.0}
    outcomes: dict[str, int] = {}

    def one(data: bytes) -> str:
        finding = examine(data, classifier, limits, settings.MAX_IMAGE_PIXELS)
        for name, ms in finding.timings_ms.items():
            stage[name] += ms / 1000
        return finding.status.value if finding.reason is None else finding.reason.value

    for data in photos[:5]:  # warm-up: first calls allocate
        one(data)
    stage = dict.fromkeys(stage, 0.0)
    start.wait()
    began = time.perf_counter()
    done = 0
    while time.perf_counter() - began < seconds:
        outcome = one(photos[done % len(photos)])
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        done += 1
    out.put({"photos": done, "seconds": time.perf_counter() - began, "stage": stage, "outcomes": outcomes})


def measure_limit(paths: list[Path], model: Path, procs: int, seconds: float, runtime: str) -> LimitResult:
    context = multiprocessing.get_context("spawn")
    serving_classifier(model, runtime, 1)  # a build to make is made once, here, not in every process
    start, out = context.Barrier(procs), context.Queue()
    # Each process starts at another photo, so together they cycle through the whole set like the queue would.
    shares = [[str(p) for p in paths[i:] + paths[:i]] for i in range(0, len(paths), max(1, len(paths) // procs))]
    workers = [context.Process(target=_worker, args=(shares[i], str(model), runtime, seconds, start, out))
               for i in range(procs)]  # fmt: skip
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 600) for _ in workers]
    for worker in workers:
        worker.join()
    total = sum(r["photos"] for r in results)
    elapsed = max(r["seconds"] for r in results)
    outcomes: dict[str, int] = {}
    for r in results:
        for name, count in r["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + count
    return LimitResult(
        procs=procs,
        seconds=round(elapsed, 1),
        photos=total,
        photos_per_s=round(total / elapsed, 2),
        per_process=[round(r["photos"] / r["seconds"], 2) for r in results],
        stage_ms={
            name: round(1000 * sum(r["stage"][name] for r in results) / total, 2) for name in results[0]["stage"]
        },
        outcomes=dict(sorted(outcomes.items())),
    )


def main() -> int:
    from core.config import settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "samples")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", type=Path, default=settings.model_path)
    parser.add_argument("--runtime", choices=["onnx-int8", "onnx-fp32", "torch"], default=settings.SERVING_RUNTIME)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "limit.json")
    args = parser.parse_args()
    paths = photos_under(args.photos)
    print(f"the limit: {len(paths)} photos, {args.procs} processes x 1 thread, {args.seconds:.0f} s, "
          f"model {args.model.name} in {args.runtime}", flush=True)  # fmt: skip
    result = measure_limit(paths, args.model, args.procs, args.seconds, args.runtime)
    for name, value in asdict(result).items():
        print(f"{name:>14}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

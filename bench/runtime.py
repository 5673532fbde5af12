"""Benchmark 6, the model runtime: per-photo latency and throughput of the served model on one core, in each
runtime we can serve it with, at batch sizes 1 to 32, and the accuracy of each on the real photos.

    .venv/bin/python bench/runtime.py --photos ../shared/data [--model FILE] [--batches 1 4 8 16 32] [--compile]

Every runtime runs the same graph: (N, S, S, 3) RGB pixels of prepared photos in, class probabilities and the leaf
gate's score out, test-time flips included (ml/export.py ServingGraph). The int8 row is the build the workers serve
(the one shipped beside the model, or one made as `core.serving` makes it, calibrated on samples/). Accuracy: top-1
over the cassava photos, a photo the leaf gate turns away counted wrong (as `mhogo evaluate` counts it), and the share
of the negatives the gate turns away. One torch / ONNX Runtime thread: the serving workers run one process per core.

The model was trained on these photos, so their accuracy says little about a runtime's own error. What does is how
often a runtime's answer differs from eager fp32 on photos no model saw: "unseen" are three variants of every photo
(a random crop of 60-90 % of it, a flip, brightness x0.7-1.3, JPEG re-encoding at quality 60-90; fixed seed). On any
set of photos, two runtimes' accuracies differ by at most the share of photos on which their answers differ, so
`1 - agreement_unseen` bounds the accuracy a runtime can lose; serving needs it within one point.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.limit import serving_classifier  # noqa: E402
from core.config import settings  # noqa: E402
from ml.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from ml.export import ServingGraph, export_onnx  # noqa: E402
from ml.imaging import decode, prepare  # noqa: E402
from ml.phone_build import OnnxPredictor, phone_input  # noqa: E402

Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # pixels -> probabilities, leaf score


@dataclass
class Row:
    runtime: str
    batch: int
    ms_per_photo: float
    photos_per_s: float
    accuracy: float
    negatives_turned_away: float | None
    agreement: float  # same top-1 as eager fp32, on the photos
    agreement_unseen: float  # same answer (top-1 and leaf gate decision) as eager fp32, on the unseen variants


def timed(run: Run, pixels: np.ndarray, batch: int, min_seconds: float) -> float:
    """Median milliseconds per photo over repeated calls on batches of `batch` photos."""
    chunks = [pixels[i : i + batch] for i in range(0, len(pixels) - batch + 1, batch)] or [pixels[:batch]]
    for chunk in chunks[:2]:
        run(chunk)  # warm-up
    times: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < min_seconds or len(times) < 5:
        chunk = chunks[len(times) % len(chunks)]
        start = time.perf_counter()
        run(chunk)
        times.append((time.perf_counter() - start) * 1000 / len(chunk))
    return statistics.median(times)


def torch_runtime(graph: Callable[[torch.Tensor], object]) -> Run:
    @torch.inference_mode()
    def run(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = graph(torch.from_numpy(pixels))
        if isinstance(out, tuple):
            return out[0].numpy(), out[1].numpy()
        assert isinstance(out, torch.Tensor)
        return out.numpy(), None

    return run


def onnx_runtime(path: Path) -> Run:
    return OnnxPredictor(path, threads=1).run


def scores(run: Run, pixels: np.ndarray, truth: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    outputs = [run(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
    probs = np.concatenate([o[0] for o in outputs])
    leaf = np.concatenate([o[1] for o in outputs]) if outputs[0][1] is not None else np.ones(len(pixels))
    return probs, leaf >= (threshold if threshold is not None else 0.0)


def unseen_variants(paths: list[Path], copies: int = 3, seed: int = 7) -> list[bytes]:
    """Photos no model saw: crops, flips, light and compression other than the originals'."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for path in paths:
        image = decode(path.read_bytes(), 10**8)
        for _ in range(copies):
            share = rng.uniform(0.6, 0.9) ** 0.5
            width, height = round(image.width * share), round(image.height * share)
            left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
            variant = image.crop((left, top, left + width, top + height))
            if rng.random() < 0.5:
                variant = ImageOps.mirror(variant)
            variant = ImageEnhance.Brightness(variant).enhance(rng.uniform(0.7, 1.3))
            buffer = io.BytesIO()
            variant.save(buffer, format="JPEG", quality=rng.randint(60, 90))
            out.append(buffer.getvalue())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=REPO / "samples")
    parser.add_argument("--model", type=Path, default=settings.model_path)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="Measure each row at least this long.")
    parser.add_argument("--compile", action="store_true", help="Also torch.compile (slow to build).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "runtime.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint: Checkpoint = load_checkpoint(args.model)
    classes = list(checkpoint.classes)
    cassava = sorted(p for p in (args.photos / "cassava").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    negatives = sorted(p for p in (args.photos / "negatives").rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    paths = cassava + negatives
    truth = np.array([classes.index(p.parent.name) for p in cassava] + [-1] * len(negatives))
    pixels = np.stack([phone_input(prepare(decode(p.read_bytes(), 10**8), checkpoint.preprocess).image,
                                   checkpoint.preprocess) for p in paths])  # fmt: skip
    threshold = checkpoint.leaf_gate.threshold if checkpoint.leaf_gate else None
    print(f"{checkpoint.version}: {len(cassava)} cassava + {len(negatives)} other photos, input "
          f"{checkpoint.preprocess.input_size} px, tta views {checkpoint.tta_views}, 1 thread", flush=True)  # fmt: skip

    graph = ServingGraph(checkpoint).eval()
    runtimes: dict[str, Run] = {"torch eager fp32": torch_runtime(graph)}
    last = ServingGraph(checkpoint).eval()
    last.model = last.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    runtimes["torch eager fp32 channels-last"] = torch_runtime(last)
    if args.compile:
        runtimes["torch.compile fp32"] = torch_runtime(torch.compile(ServingGraph(checkpoint).eval(), dynamic=True))
    folder = Path(tempfile.mkdtemp(prefix="mhogo-runtime-"))
    fp32 = export_onnx(checkpoint, folder / "model.onnx", settings.quality_thresholds)
    runtimes["onnxruntime fp32"] = onnx_runtime(fp32.path)
    served = serving_classifier(args.model, "onnx-int8", threads=1)  # the int8 build the workers serve
    runtimes["onnxruntime int8 (served)"] = onnx_runtime(served.path)

    variants = unseen_variants(paths)
    unseen = np.stack([phone_input(prepare(decode(data, 10**8), checkpoint.preprocess).image, checkpoint.preprocess)
                       for data in variants])  # fmt: skip
    print(f"{len(variants)} unseen variants of the photos for the agreement with eager fp32", flush=True)
    reference, _ = scores(runtimes["torch eager fp32"], pixels, truth, threshold)
    unseen_truth = np.repeat(truth, len(variants) // len(paths))
    unseen_reference, unseen_reference_ok = scores(runtimes["torch eager fp32"], unseen, unseen_truth, threshold)
    rows: list[Row] = []
    print("| runtime | batch | ms per photo | photos/s per core | accuracy | negatives turned away | same top-1 | "
          "same answer, unseen |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for name, run in runtimes.items():
        probs, leaf_ok = scores(run, pixels, truth, threshold)
        is_cassava = truth >= 0
        right = (probs.argmax(1) == truth) & leaf_ok
        accuracy = float(right[is_cassava].mean())
        turned_away = float((~leaf_ok[~is_cassava]).mean()) if threshold is not None else None
        agreement = float((probs.argmax(1) == reference.argmax(1))[is_cassava].mean())
        unseen_probs, unseen_ok = scores(run, unseen, unseen_truth, threshold)
        same = (unseen_probs.argmax(1) == unseen_reference.argmax(1)) & (unseen_ok == unseen_reference_ok)
        agreement_unseen = float(same.mean())
        for batch in args.batches:
            ms = timed(run, pixels, batch, args.seconds)
            row = Row(name, batch, round(ms, 2), round(1000 / ms, 1), round(accuracy, 4),
                      None if turned_away is None else round(turned_away, 4), round(agreement, 4),
                      round(agreement_unseen, 4))  # fmt: skip
            rows.append(row)
            away = "-" if row.negatives_turned_away is None else f"{row.negatives_turned_away:.3f}"
            print(f"| {name} | {batch} | {row.ms_per_photo:.1f} | {row.photos_per_s:.1f} | {row.accuracy:.3f} | "
                  f"{away} | {row.agreement:.3f} | {row.agreement_unseen:.3f} |", flush=True)  # fmt: skip
    eager = next(r for r in rows if r.runtime == "torch eager fp32")  # batch args.batches[0]
    within = [r for r in rows if r.accuracy >= eager.accuracy - 0.01 and r.agreement_unseen >= 0.99
              and (r.negatives_turned_away or 0) >= (eager.negatives_turned_away or 0) - 0.01]  # fmt: skip
    fastest = min(within, key=lambda r: r.ms_per_photo)
    print(f"fastest within one point of eager fp32 (accuracy, negatives turned away, answers on unseen photos): "
          f"{fastest.runtime}, "
          f"batch {fastest.batch}, "
          f"{fastest.ms_per_photo:.1f} ms per photo, {eager.ms_per_photo / fastest.ms_per_photo:.1f}x eager at "
          f"batch {eager.batch}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": checkpoint.version, "rows": [r.__dict__ for r in rows],
                                    "fastest_within_one_point": fastest.__dict__}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The phone builds of a model, measured in one run: file size, per-photo latency, and accuracy against the
server model on real photos.

    .venv/bin/python bench/export.py ../shared/data/cassava [--model champion] [--threads 1]

Latency is the median of --repeats single-photo calls (batch of 1, as a phone diagnoses one leaf), after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core import registry
from core.blobs import BlobStore
from core.config import settings
from core.db import open_session
from ml.data import scan
from ml.export import export_int8, export_onnx
from ml.imaging import decode, prepare
from ml.phone_build import OnnxPredictor, phone_input
from ml.predictor import Predictor
from ml.tensors import model_input


def median_ms(call: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--model", default=None, help="file, version or alias; default: the champion")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open_session(settings.database_url) as session:
        checkpoint = registry.resolve(session, BlobStore(settings.blob_dir), args.model, settings.model_path)
    samples = scan(args.data_dir, checkpoint.classes)
    print(f"{checkpoint.version}: {len(samples)} photos, {args.threads} thread(s), tta views {checkpoint.tta_views}")
    images = [prepare(decode(s.path.read_bytes(), 10**8), checkpoint.preprocess).image for s in samples]
    truth = np.array([s.label for s in samples])
    server = Predictor(checkpoint)
    tensors = torch.stack([model_input(image, checkpoint.preprocess) for image in images])
    reference = server.probabilities(tensors).numpy()
    pixels = np.stack([phone_input(image, checkpoint.preprocess) for image in images])
    folder = Path(tempfile.mkdtemp(prefix="mhogo-export-"))
    fp32 = export_onnx(checkpoint, folder / "model.onnx", settings.quality_thresholds)
    int8 = export_int8(checkpoint, fp32.path, folder / "model.int8.onnx", list(pixels), settings.quality_thresholds)
    server_ms = median_ms(lambda: server.probabilities(tensors[:1]), args.repeats)
    rows: list[tuple[str, np.ndarray, float, int | None]] = [("server (torch fp32)", reference, server_ms, None)]
    for name, built in (("onnx fp32", fp32), ("onnx int8", int8)):
        runner = OnnxPredictor(built.path, threads=args.threads)
        one = pixels[:1]
        ms = median_ms(lambda runner=runner, one=one: runner.probabilities(one), args.repeats)  # type: ignore[misc]
        rows.append((name, runner.probabilities(pixels), ms, built.size_bytes))
    base_accuracy = float((reference.argmax(1) == truth).mean())
    print("| build | size | latency per photo | accuracy | vs server: same top-1 | max prob. difference |")
    print("|---|---|---|---|---|---|")
    for name, probs, ms, size in rows:
        accuracy = float((probs.argmax(1) == truth).mean())
        same = float((probs.argmax(1) == reference.argmax(1)).mean())
        size_text = f"{size / 1e6:.1f} MB" if size else "-"
        print(f"| {name} | {size_text} | {ms:.1f} ms | {accuracy:.3f} ({accuracy - base_accuracy:+.3f}) | "
              f"{same:.3f} | {np.abs(probs - reference).max():.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()

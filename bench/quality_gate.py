"""How the quality gate does on real photos and on degraded copies of them (the acceptance bar of issue 4).

    .venv/bin/python bench/quality_gate.py ../shared/data [--json out.json]

For every cassava photo under DIR: does the original pass, and is each degraded copy (ml/degrade.py) turned away
with the right reason? Prints a table; the thresholds are those in settings (core/config.py).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from core.config import settings
from ml.data import scan
from ml.degrade import DEGRADATIONS
from ml.imaging import PreprocessConfig, decode, prepare
from ml.quality import quality_gate
from schemas.labels import LABELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    photos = scan(args.data_dir, [label.value for label in LABELS])
    config, limits = PreprocessConfig(), settings.quality_thresholds
    verdicts: dict[str, Counter[str]] = {"original": Counter(), **{name: Counter() for name in DEGRADATIONS}}
    for sample in tqdm(photos, desc="quality gate", unit="photo"):
        image = decode(sample.path.read_bytes(), settings.MAX_IMAGE_PIXELS)
        for name, (make, _) in [("original", (lambda i: i, "")), *DEGRADATIONS.items()]:
            reason = quality_gate(prepare(make(image), config).stats, limits)
            verdicts[name][reason.value if reason else "pass"] += 1
    rows = []
    for name, counts in verdicts.items():
        expected = "pass" if name == "original" else DEGRADATIONS[name][1].value
        rows.append({"photos": name, "expected": expected, "rate": round(counts[expected] / len(photos), 4),
                     "verdicts": dict(counts)})  # fmt: skip
    print(f"{len(photos)} cassava photos from {args.data_dir}; thresholds {limits}")
    print("| photos | expected | rate | all verdicts |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['photos']} | {row['expected']} | {row['rate']:.3f} | {row['verdicts']} |")
    if args.json:
        args.json.write_text(json.dumps({"photos": len(photos), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

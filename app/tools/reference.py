"""Reference numbers for test/preprocess.test.js, computed by the server's own functions (ml/imaging.py,
ml/quality.py) on small images, written to test/fixtures/preprocess.json. Run from the repository's root:

    PYTHONPATH=$PWD .venv/bin/python app/tools/reference.py
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ml.imaging import PreprocessConfig, center_square, image_stats, normalise_brightness, to_working_size
from ml.quality import QualityThresholds, quality_gate

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "app" / "test" / "fixtures" / "preprocess.json"
LIMITS = QualityThresholds(min_side_px=40, dark_luma=45.0, bright_luma=200.0, bright_clipped_fraction=0.25,
                           blur_laplacian_var=35.0, min_green_fraction=0.15)  # fmt: skip


def b64(image: Image.Image) -> str:
    return base64.b64encode(np.asarray(image, dtype=np.uint8).tobytes()).decode()


def case(name: str, image: Image.Image, config: PreprocessConfig) -> dict[str, object]:
    working = to_working_size(image, config)
    stats = image_stats(working, image.size)
    lifted = normalise_brightness(working, stats["luma_mean"], config)
    square = center_square(lifted, config.input_size)
    return {
        "name": name,
        "config": config.to_dict(),
        "input": {"width": image.width, "height": image.height, "rgb": b64(image)},
        "working": {"width": working.width, "height": working.height, "rgb": b64(working)},
        "stats": stats,
        "reason": quality_gate(stats, LIMITS),
        "lifted": b64(lifted),
        "square": {"size": square.width, "rgb": b64(square)},
    }


def main() -> None:
    folder = ROOT / "samples" / "cassava" / "cmd"
    photo = Image.open(min(folder.iterdir())).convert("RGB")
    leaf = photo.resize((120, 90), Image.Resampling.BOX)
    dark = leaf.transpose(Image.Transpose.ROTATE_90).point(lambda v: v // 3).crop((0, 3, 90, 113))
    rng = np.random.default_rng(24)
    noise = Image.fromarray(rng.integers(0, 256, (33, 47, 3), dtype=np.uint8))
    cases = [
        case("leaf landscape", leaf, PreprocessConfig(work_size=64, input_size=48)),
        case("dark portrait", dark, PreprocessConfig(work_size=70, input_size=56)),
        case("noise upscaled", noise, PreprocessConfig(work_size=61, input_size=40)),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"limits": LIMITS.__dict__, "cases": cases}, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()

"""The app's committed pictures, made once: the icons (a cassava leaf drawn with Pillow) and one small example photo
per class from samples/cassava/ (the picture beside a diagnosis, and the ones a farmer picks from). Run from the
repository's root:

    .venv/bin/python app/tools/make_assets.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "app" / "public"
GREEN = (27, 94, 32)
LEAF = (200, 230, 160)
PETIOLE = (214, 96, 77)  # cassava's reddish leaf stalk
# Chosen by eye from samples/cassava: one photo each where the sign of the disease is plain at 96 px.
EXAMPLES = {
    "cbb": "kg20_2813723824.jpg",
    "cbsd": "aib5_cbsd_1427.jpg",
    "cgm": "aib5_cgm_1427.jpg",
    "cmd": "kg20_1279535323.jpg",
    "healthy": "mld_h1.jpg",
}


def lobe(cx: float, cy: float, angle: float, length: float, width: float) -> list[tuple[float, float]]:
    """A cassava lobe from (cx, cy) towards `angle`: narrow at the base, widest two thirds out, a short point."""
    shape = [(s**0.9) * ((1 - s) ** 0.6) for s in (i / 40 for i in range(41))]
    profile = [(length * i / 40, width * v / max(shape)) for i, v in enumerate(shape)]
    points = [(x, y / 2) for x, y in profile] + [(x, -y / 2) for x, y in reversed(profile)]
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]


def leaf_icon(size: int, scale: float, background: bool) -> Image.Image:
    big = size * 4  # drawn large, then scaled down: smooth edges
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if background:
        draw.rectangle((0, 0, big, big), fill=GREEN)
    else:
        draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=big // 5, fill=GREEN)
    cx, cy = big / 2, big * (0.5 + 0.08 * scale)
    length, width = big * 0.40 * scale, big * 0.1 * scale
    # Seven long, narrow, smooth lobes fanned almost all round, as a cassava leaf's.
    draw.line(
        (cx, cy, cx - big * 0.12 * scale, cy + big * 0.34 * scale), fill=PETIOLE, width=max(2, int(big * 0.03 * scale))
    )
    for degrees, reach in ((-90, 1.0), (-130, 0.9), (-50, 0.9), (-170, 0.72), (-10, 0.72)):
        draw.polygon(lobe(cx, cy, math.radians(degrees), length * reach, width), fill=LEAF)
    # A magnifying glass over the leaf: a leaf doctor, not only a leaf.
    mx, my, r = cx + big * 0.19 * scale, cy + big * 0.15 * scale, big * 0.095 * scale
    line = max(3, int(big * 0.035 * scale))
    draw.line((mx + r * 0.7, my + r * 0.7, mx + r * 1.8, my + r * 1.8), fill="white", width=int(line * 1.6))
    draw.ellipse((mx - r, my - r, mx + r, my + r), outline="white", width=line)
    small = image.resize((size, size), Image.Resampling.LANCZOS)
    return small.quantize(48, method=Image.Quantize.FASTOCTREE)  # a few flat colours: a palette PNG is a third the size


def square(path: Path, side: int) -> Image.Image:
    image = Image.open(path).convert("RGB")
    s = min(image.size)
    left, top = (image.width - s) // 2, (image.height - s) // 2
    return image.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.LANCZOS)


def main() -> None:
    icons = PUBLIC / "icons"
    icons.mkdir(parents=True, exist_ok=True)
    leaf_icon(192, 1.0, False).save(icons / "icon-192.png", optimize=True)
    leaf_icon(512, 1.0, False).save(icons / "icon-512.png", optimize=True)
    leaf_icon(512, 0.75, True).save(icons / "icon-maskable-512.png", optimize=True)  # inside the 80 % safe zone
    leaf_icon(180, 0.85, True).save(icons / "apple-touch-icon.png", optimize=True)
    leaf_icon(32, 1.0, False).save(icons / "favicon-32.png", optimize=True)
    examples = PUBLIC / "examples"
    examples.mkdir(parents=True, exist_ok=True)
    for label, name in EXAMPLES.items():
        square(ROOT / "samples" / "cassava" / label / name, 96).save(
            examples / f"{label}.jpg", quality=80, optimize=True
        )
    for path in sorted(PUBLIC.rglob("*.*")):
        print(f"{path.relative_to(PUBLIC)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

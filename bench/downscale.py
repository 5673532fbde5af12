"""Does the phone's downscaling change the server's diagnosis? Measured in one run on real photos.

    .venv/bin/python bench/downscale.py ../shared/data [--side 1024] [--quality 85] [--camera-side 4000]

The farmer's app shrinks every photo before it leaves the phone (longer side 1024 px, JPEG quality 85), so that a
4 MB camera photo does not go over 2G. The photos of ../shared/data are small already (384 px at most), so two
comparisons, each through the served model's whole path (quality gate, model, leaf gate; `examine`):

  as sent     the original file against the same photo re-encoded as the phone sends it
  from camera the photo blown up to a camera's size (longer side --camera-side, JPEG quality 95: a few MB, as a
              phone camera writes it) and then shrunk as the phone does, against the original

"Same answer" is the same label, or both turning the photo away with the same reason. The browser's canvas resizes
a little differently from Pillow's Lanczos used here (the app's browser test checks its own photos).
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path

from PIL import Image

from core.config import settings
from core.serving import prebuilt_path
from ml.data import negatives_beside, scan
from ml.phone_build import PhoneBuild
from producers.phone import shrink
from schemas.findings import Finding


def answer(finding: Finding) -> str:
    return finding.label or (finding.reason.value if finding.reason else "?")


def camera_photo(data: bytes, side: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    scale = side / max(rgb.size)
    big = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=95)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--camera-side", type=int, default=4000)
    args = parser.parse_args()
    served = PhoneBuild(prebuilt_path(settings.model_path, "onnx-fp32"), threads=2)
    photos = [p.path for p in scan(args.data_dir, served.classes)] + [p.path for p in negatives_beside(args.data_dir)]
    same_sent, same_camera, camera_bytes, sent_bytes = [], [], [], []
    for path in photos:
        original = path.read_bytes()
        expected = answer(served.examine(original))
        sent = shrink(original, args.side, args.quality)
        camera = camera_photo(original, args.camera_side)
        from_camera = shrink(camera, args.side, args.quality)
        same_sent.append(answer(served.examine(sent)) == expected)
        same_camera.append(answer(served.examine(from_camera)) == expected)
        camera_bytes.append(len(camera))
        sent_bytes.append(len(from_camera))
    print(f"{len(photos)} photos of {args.data_dir}, served build {served.version} ({served.precision})")
    print(f"as sent (re-encoded at quality {args.quality}): same answer {statistics.mean(same_sent):.3f}")
    print(f"from camera ({args.camera_side} px, median {statistics.median(camera_bytes) / 1e6:.2f} MB) shrunk to "
          f"{args.side} px (median {statistics.median(sent_bytes) / 1e3:.0f} KB, "
          f"{statistics.median(c / s for c, s in zip(camera_bytes, sent_bytes, strict=True)):.0f}x smaller): "
          f"same answer {statistics.mean(same_camera):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

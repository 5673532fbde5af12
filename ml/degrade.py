"""The ways field photos go wrong, made on purpose from good photos: to set and check the quality gate's thresholds.

Each is the acceptance test's definition: darkened to a fifth of its brightness; blurred with a Gaussian of radius
8 px after scaling to 384 px on the longer side; over-exposed to three times its brightness.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageEnhance, ImageFilter

from schemas.reasons import RejectReason


def darkened(image: Image.Image, factor: float = 0.2) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def blurred(image: Image.Image, radius: float = 8.0, size: int = 384) -> Image.Image:
    scale = size / max(image.size)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return resized.filter(ImageFilter.GaussianBlur(radius))


def washed_out(image: Image.Image, factor: float = 3.0) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


# name -> (how to degrade, the reason the quality gate must give)
DEGRADATIONS: dict[str, tuple[Callable[[Image.Image], Image.Image], RejectReason]] = {
    "darkened x0.2": (darkened, RejectReason.TOO_DARK),
    "blurred r=8 at 384 px": (blurred, RejectReason.BLURRY),
    "brightened x3": (washed_out, RejectReason.TOO_BRIGHT),
}

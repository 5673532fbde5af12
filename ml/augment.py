"""Training-time augmentation with Pillow: the field photos vary in framing, light, focus and orientation."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class AugmentConfig:
    crop_size: int = 224  # side of the random crops the model learns from (it is served larger: see input_size)
    crop_scale: tuple[float, float] = (0.35, 1.0)  # share of the image area kept by the random crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True  # leaves have no up or down: flip both ways
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    blur_probability: float = 0.2
    blur_radius: tuple[float, float] = (0.3, 1.5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def random_resized_crop(
    image: Image.Image, size: int, scale: tuple[float, float], ratio: tuple[float, float], rng: random.Random
) -> Image.Image:
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    side = min(width, height)  # fall back to the centre square
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def jitter(image: Image.Image, config: AugmentConfig, rng: random.Random) -> Image.Image:
    enhancers = [
        (ImageEnhance.Brightness, config.brightness),
        (ImageEnhance.Contrast, config.contrast),
        (ImageEnhance.Color, config.saturation),
    ]
    rng.shuffle(enhancers)
    for enhancer, strength in enhancers:
        if strength > 0:
            image = enhancer(image).enhance(rng.uniform(1 - strength, 1 + strength))
    return image


def augment(image: Image.Image, size: int, config: AugmentConfig, rng: random.Random) -> Image.Image:
    """Prepared image -> a randomly cropped, flipped, jittered and sometimes blurred square of `size`."""
    image = random_resized_crop(image, size, config.crop_scale, config.crop_ratio, rng)
    if config.flip:
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    image = jitter(image, config, rng)
    if rng.random() < config.blur_probability:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*config.blur_radius)))
    return image

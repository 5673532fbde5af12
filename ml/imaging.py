"""Decoding and preprocessing of one photo with Pillow and NumPy only (no torch), so the API and a serving process
that runs an ONNX build stay light.

The same functions feed training, serving and `mhogo predict`: decode -> orient -> RGB -> working size ->
statistics (for the quality gate and drift checks) -> brightness normalisation.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from schemas.errors import UnreadableImage, UnsupportedMediaType

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A photo sent from a phone with more pixels is refused (MHOGO_MAX_IMAGE_PIXELS): 24 MP holds what a phone camera saves
# by default (8-16 MP; the 48, 50, 108 and 200 MP sensors bin to 12-16 MP) with room to spare, and the farmer's app
# sends 1024 px. Only full-resolution modes (48 MP and up) and decompression bombs are above it. The cap bounds the
# memory and time of checking one PNG (a 7000x7000 one, under the 50 MP cap before, took 1.2 s and 191 MB).
MAX_PIXELS = 24_000_000
MAX_LOCAL_PIXELS = 100_000_000  # the limit for photos read from a folder of one's own (training, evaluation)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a photo becomes model input. Stored in every checkpoint so serving and training cannot drift apart."""

    work_size: int = 320  # longer side of the working image, in pixels
    input_size: int = 256  # side of the square model input as served. Larger than the training crops (224): a
    # random crop zooms in, so a leaf looks bigger in training than in the served centre square; serving at 256
    # matches the two (FixRes). Same five fold models, mirror TTA: 0.596 accuracy served at 224, 0.681 at 256.
    mean: float = 127.0  # EfficientNet-Lite normalisation: (x - 127) / 128
    std: float = 128.0
    target_luma: float = 100.0  # under-exposed photos are lifted towards this mean luma
    max_gamma_lift: float = 0.6  # smallest gamma applied, so a dark photo is lifted, never blown out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sniff_format(data: bytes) -> str:
    """'JPEG' or 'PNG' from the magic bytes; anything else is not a photo we take."""
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    raise UnsupportedMediaType("This is not a JPEG or PNG photo. Send the photo as the phone's camera saved it.")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (headers only) and refuse decompression bombs before any pixel is decoded."""
    image = Image.open(io.BytesIO(data), formats=[sniff_format(data)])
    width, height = image.size
    if width * height > max_pixels:
        raise UnreadableImage(
            f"The photo is {width}x{height} pixels, more than the {max_pixels} allowed. Send a smaller photo."
        )
    return image


PILLOW_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    zlib.error,  # our own look at a PNG's pixel data, for a stream Pillow let through
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


@contextmanager
def _read_errors() -> Iterator[None]:
    """Pillow fails on bad bytes in many ways; each becomes one UnreadableImage with a reason."""
    with warnings.catch_warnings():
        # Damaged metadata (EXIF pointing past its end) is only warned about, and the pixels are fine; a process
        # run with warnings as errors would otherwise refuse a good photo with a 500.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except PILLOW_ERRORS as exc:
            raise UnreadableImage(f"The photo is damaged or incomplete ({exc}). Take it again.") from exc


PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _png_rows_missing(data: bytes) -> bool:
    """True when the compressed pixel data ends before the rows the header announces. Pillow does not notice:
    it paints the missing rows black, and a photo whose header lies about its height would reach the model."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    bits = PNG_CHANNELS.get(colour, 4) * depth
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    expected = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))  # a filter byte, then the packed row
    stream, found, offset = zlib.decompressobj(), 0, 8
    while offset + 8 <= len(data) and found < expected:
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunk = data[offset + 8 : offset + 8 + length] if kind == b"IDAT" else b""
        while chunk and found < expected:  # inflated in slices, never more than needed: memory stays small
            found += len(stream.decompress(chunk, min(expected - found, 1 << 20)))
            chunk = stream.unconsumed_tail
        offset += 12 + length
    return found < expected


def validate(data: bytes, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """Check that the bytes are a whole JPEG or PNG without decoding at full size (JPEG decodes at 1/8 scale,
    which still reads every byte of the compressed stream). Returns the format and size."""
    with _read_errors():
        image = _open(data, max_pixels)
        size = image.size
        fmt = sniff_format(data)  # not image.format: Pillow names a multi-picture JPEG (some phone cameras) "MPO"
        if fmt == "JPEG":
            image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        else:
            image.verify()  # chunk checksums and the end marker; verify() leaves the image unusable, so reopen
            image = _open(data, max_pixels)
        image.load()
        if fmt == "PNG" and _png_rows_missing(data):
            raise UnreadableImage("The photo is incomplete: it has fewer rows than its header says. Take it again.")
    return fmt, size


def pixels_to_check(data: bytes) -> int:
    """About how many pixels `validate` decodes, read from the header alone: all of a PNG's, a 64th of a JPEG's
    (decoded at 1/8 scale). 0 when the header cannot be read: `validate` then says why, at no cost."""
    try:
        fmt = sniff_format(data)
        with _read_errors():
            width, height = Image.open(io.BytesIO(data), formats=[fmt]).size
    except (UnreadableImage, UnsupportedMediaType):
        return 0
    return width * height if fmt == "PNG" else width * height // 64


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> upright RGB image, fully decoded. Raises UnreadableImage for anything Pillow cannot read whole."""
    with _read_errors():
        image = _open(data, max_pixels)
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_8_bit(image).convert("RGB")


def to_8_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale PNG ("I;16", "I") scaled to 8 bits. Pillow's own conversion clips every value above 255,
    which turns a well exposed 16-bit photo white."""
    if not image.mode.startswith("I"):
        return image
    pixels = np.asarray(image).astype(np.float32) / 257.0
    return Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8))


def to_working_size(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """Scale so that the longer side is `work_size`: the quality gate's thresholds hold at one scale."""
    width, height = image.size
    scale = config.work_size / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low when the photo has no sharp edges."""
    if min(gray.shape) < 3:  # a strip one or two pixels high has no interior: NaN and warnings otherwise
        return 0.0
    lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4.0 * gray[1:-1, 1:-1]
    return float(lap.var())


def image_stats(image: Image.Image, original_size: tuple[int, int]) -> dict[str, float]:
    """Figures about the working-size image for the quality gate, and later for input drift checks. One float
    conversion of the pixels feeds them all (this runs for every photo, on the inference workers' cores)."""
    rgb = np.asarray(image).astype(np.float32)  # (H, W, 3)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    gray = red * 0.299 + green * 0.587 + blue * 0.114  # luma, ITU-R BT.601
    pixels = gray.size
    # Channel by channel: a sum over axis 0 of the (pixels, 3) array took 1.5 ms of the 2.5 here, for the same sums.
    means = [float(channel.sum(dtype=np.float64)) / pixels for channel in (red, green, blue)]
    # Excess green above a small margin, 2g - r - b > 0.05 in chromaticity (each channel + 1), without dividing.
    plant_green = 2.0 * green - red - blue > 0.05 * (red + green + blue + 3.0)
    return {
        "width": float(original_size[0]),
        "height": float(original_size[1]),
        "luma_mean": float(gray.mean(dtype=np.float64)),
        "luma_std": float(gray.std(dtype=np.float64)),
        "clipped_white": np.count_nonzero(gray >= 250) / pixels,
        "clipped_black": np.count_nonzero(gray <= 5) / pixels,
        "red_mean": means[0],
        "green_mean": means[1],
        "blue_mean": means[2],
        "sharpness": laplacian_variance(gray),
        "green_fraction": np.count_nonzero(plant_green) / pixels,
    }


def normalise_brightness(image: Image.Image, luma_mean: float, config: PreprocessConfig) -> Image.Image:
    """Lift an under-exposed photo with a gamma curve so its mean luma nears the target; others pass unchanged."""
    if luma_mean >= config.target_luma or luma_mean <= 1.0:
        return image
    # Solve 255 * (m / 255) ** g = target for g, bounded so noise in deep shadow is not blown up.
    gamma = max(config.max_gamma_lift, float(np.log(config.target_luma / 255.0) / np.log(luma_mean / 255.0)))
    table = [round(255.0 * (i / 255.0) ** gamma) for i in range(256)]
    return image.point(table * 3)


@dataclass(frozen=True)
class Prepared:
    image: Image.Image  # working size, brightness normalised
    stats: dict[str, float]


def prepare(image: Image.Image, config: PreprocessConfig) -> Prepared:
    """Upright RGB photo -> working-size, brightness-normalised image and its statistics (taken before the lift)."""
    original_size = image.size
    working = to_working_size(image, config)
    stats = image_stats(working, original_size)
    return Prepared(normalise_brightness(working, stats["luma_mean"], config), stats)


def center_square(image: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to `size`, then crop the centre square."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize(
        (max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BILINEAR
    )
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))

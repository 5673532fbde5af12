"""A corpus of hostile and odd files, generated from the sample photos: what a broken phone, a careless client or an
attacker may upload. Each function returns a `Hostile`: the file name and Content-Type it is sent with, its bytes,
and what mhogo must answer: an HTTP status for a file refused at the door, or, for a file accepted (202), the end of
its job: "classified" or the code of the reason it was rejected. Every photo here that is classified is made from the
same mosaic-disease (cmd) sample, so it must be classified as cmd."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from PIL import Image

from tests.utils.factories import jpeg_bytes, png_bomb, png_bytes, sample_bytes

CLASSIFIED = "classified"
USER_COMMENT = 0x9286  # in the EXIF sub-IFD
EXIF_IFD = 0x8769
ORIENTATION = 0x0112


class Hostile(NamedTuple):
    name: str
    data: bytes
    content_type: str
    expected: int | str  # HTTP status when refused; else CLASSIFIED or a RejectReason code

    @property
    def refused(self) -> bool:
        return isinstance(self.expected, int)


def leaf() -> Image.Image:
    """A cassava leaf with mosaic disease that the baseline model classifies."""
    return Image.open(io.BytesIO(sample_bytes("cmd"))).convert("RGB")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, depth: int, colour: int, rows: list[bytes], extra: bytes = b"") -> bytes:
    """A PNG written by hand, so that its header can say what its data does not."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def zero_bytes() -> Hostile:
    return Hostile("empty.jpg", b"", "image/jpeg", 422)


def truncated_jpeg() -> Hostile:
    """The upload cut off half way, as on a dropped connection."""
    data = sample_bytes("cmd")
    return Hostile("truncated.jpg", data[: len(data) // 2], "image/jpeg", 422)


def jpeg_named_png() -> Hostile:
    """A good JPEG with a .png name and Content-Type image/png: the bytes decide, not the label."""
    return Hostile("leaf.png", sample_bytes("cmd"), "image/png", CLASSIFIED)


def png_named_jpeg() -> Hostile:
    return Hostile("leaf.jpg", png_bytes(leaf()), "image/jpeg", CLASSIFIED)


def png_decompression_bomb() -> Hostile:
    """20000x20000 pixels in about 50 KB."""
    return Hostile("bomb.png", png_bomb(), "image/png", 422)


def jpeg_decompression_bomb() -> Hostile:
    """A real JPEG whose frame header claims 65000x65000 pixels."""
    data = bytearray(sample_bytes("cmd"))
    frame = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    data[frame + 5 : frame + 9] = struct.pack(">HH", 65000, 65000)
    return Hostile("bomb.jpg", bytes(data), "image/jpeg", 422)


def png_header_lies_about_size() -> Hostile:
    """Checksums all right, but the header claims ten times the rows the pixel data holds."""
    image = leaf()
    width, height = image.size
    raw = image.tobytes()
    rows = [raw[y * width * 3 : (y + 1) * width * 3] for y in range(height)]
    return Hostile("tall.png", _png(width, height * 10, 8, 2, rows), "image/png", 422)


def png_text_bomb() -> Hostile:
    """A zTXt metadata chunk that inflates to 200 MB."""
    png = png_bytes(leaf())
    bomb = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 200_000_000, 9))
    return Hostile("text-bomb.png", png[:33] + bomb + png[33:], "image/png", 422)  # after the IHDR chunk


def animated_gif() -> Hostile:
    image = leaf()
    buffer = io.BytesIO()
    image.save(buffer, format="GIF", save_all=True, append_images=[image.rotate(180)], duration=200, loop=0)
    return Hostile("leaf.gif", buffer.getvalue(), "image/gif", 415)


def animated_png() -> Hostile:
    """APNG is still a PNG: its first frame is the photo."""
    image = leaf()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", save_all=True, append_images=[image.rotate(180)], duration=200, loop=0)
    return Hostile("animated.png", buffer.getvalue(), "image/png", CLASSIFIED)


def multi_picture_jpeg() -> Hostile:
    """MPO, the multi-picture JPEG some phone cameras save: a JPEG to everyone, "MPO" to Pillow."""
    image = leaf()
    buffer = io.BytesIO()
    image.save(buffer, format="MPO", save_all=True, append_images=[image.rotate(180)])
    return Hostile("stereo.jpg", buffer.getvalue(), "image/jpeg", CLASSIFIED)


def cmyk_jpeg() -> Hostile:
    buffer = io.BytesIO()
    leaf().convert("CMYK").save(buffer, format="JPEG", quality=95)
    return Hostile("cmyk.jpg", buffer.getvalue(), "image/jpeg", CLASSIFIED)


def rgb_16_bit_png() -> Hostile:
    """48 bits a pixel; Pillow cannot write these, so it is written by hand."""
    pixels = np.asarray(leaf()).astype(">u2") * 257
    height, width, _ = pixels.shape
    rows = [pixels[y].tobytes() for y in range(height)]
    return Hostile("leaf-16bit.png", _png(width, height, 16, 2, rows), "image/png", CLASSIFIED)


def grey_16_bit_png() -> Hostile:
    """Full-range 16-bit greyscale. Read right (not clipped white), it is a leaf with no green at all."""
    pixels = np.asarray(leaf().convert("L")).astype(">u2") * 257
    rows = [row.tobytes() for row in pixels]
    return Hostile("grey-16bit.png", _png(pixels.shape[1], pixels.shape[0], 16, 0, rows), "image/png", "leaf_too_small")


def huge_exif() -> Hostile:
    """A 60 KB EXIF UserComment: nearly all of the 64 KB a JPEG APP1 segment can hold."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"ASCII\x00\x00\x00" + b"A" * 60_000
    buffer = io.BytesIO()
    leaf().save(buffer, format="JPEG", quality=95, exif=exif)
    return Hostile("exif.jpg", buffer.getvalue(), "image/jpeg", CLASSIFIED)


def garbage_orientation() -> Hostile:
    """EXIF orientation 65535, where only 1 to 8 mean something: the photo is taken as it is."""
    exif = Image.Exif()
    exif[ORIENTATION] = 65535
    buffer = io.BytesIO()
    leaf().save(buffer, format="JPEG", quality=95, exif=exif)
    return Hostile("orientation.jpg", buffer.getvalue(), "image/jpeg", CLASSIFIED)


def corrupt_exif() -> Hostile:
    """An EXIF block whose one entry points far past its end."""
    entry = struct.pack("<HHII", ORIENTATION, 3, 0x7FFFFFFF, 0)  # tag, SHORT, a count no file holds, offset
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 1) + entry + b"\x00" * 4
    buffer = io.BytesIO()
    leaf().save(buffer, format="JPEG", quality=95, exif=exif)
    return Hostile("corrupt-exif.jpg", buffer.getvalue(), "image/jpeg", CLASSIFIED)


def jpeg_with_payload() -> Hostile:
    """A polyglot: a whole JPEG, then HTML and a ZIP header after its end marker."""
    payload = b"<html><script>alert(1)</script></html>PK\x03\x04" + b"\x00" * 64
    return Hostile("polyglot.jpg", sample_bytes("cmd") + payload, "image/jpeg", CLASSIFIED)


def one_pixel() -> Hostile:
    return Hostile("dot.png", png_bytes(Image.new("RGB", (1, 1), (60, 140, 50))), "image/png", "too_small")


def one_pixel_strip() -> Hostile:
    """4000x1: a working image with no interior for the sharpness measure."""
    return Hostile("strip.jpg", jpeg_bytes(Image.new("RGB", (4000, 1), (60, 140, 50))), "image/jpeg", "too_small")


def svg() -> Hostile:
    data = b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"><rect width="300" height="300" '
    data += b'fill="green"/><script>alert(1)</script></svg>'
    return Hostile("leaf.svg", data, "image/svg+xml", 415)


def html_as_jpeg() -> Hostile:
    """A web page sent with a photo's name and Content-Type."""
    data = b"<!DOCTYPE html><html><head><title>Cassava</title></head><body><img src=leaf.jpg></body></html>"
    return Hostile("leaf.jpg", data, "image/jpeg", 415)


CORPUS: list[Callable[[], Hostile]] = [
    zero_bytes,
    truncated_jpeg,
    jpeg_named_png,
    png_named_jpeg,
    png_decompression_bomb,
    jpeg_decompression_bomb,
    png_header_lies_about_size,
    png_text_bomb,
    animated_gif,
    animated_png,
    multi_picture_jpeg,
    cmyk_jpeg,
    rgb_16_bit_png,
    grey_16_bit_png,
    huge_exif,
    garbage_orientation,
    corrupt_exif,
    jpeg_with_payload,
    one_pixel,
    one_pixel_strip,
    svg,
    html_as_jpeg,
]


def corpus() -> list[Hostile]:
    return [make() for make in CORPUS]

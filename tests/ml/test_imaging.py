import io

import pytest
from PIL import Image, ImageEnhance

from ml.imaging import PreprocessConfig, decode, image_stats, normalise_brightness, prepare, sniff_format, validate
from schemas.errors import UnreadableImage, UnsupportedMediaType
from tests.utils.factories import jpeg_bytes, png_bomb, png_bytes, sample_bytes, sample_photo

CONFIG = PreprocessConfig()


def test_sniff_accepts_jpeg_and_png_only() -> None:
    assert sniff_format(sample_bytes()) == "JPEG"
    assert sniff_format(png_bytes(Image.new("RGB", (4, 4)))) == "PNG"
    with pytest.raises(UnsupportedMediaType):
        sniff_format(b"GIF89a....")


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (300, 200), "green")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode(buffer.getvalue(), 10**8).size == (200, 300)


def test_decode_gives_rgb_from_grey_and_alpha() -> None:
    grey = png_bytes(Image.new("L", (50, 40), 128))
    rgba = png_bytes(Image.new("RGBA", (50, 40), (1, 2, 3, 4)))
    assert decode(grey, 10**8).mode == "RGB"
    assert decode(rgba, 10**8).mode == "RGB"


@pytest.mark.parametrize("check", [validate, decode])
def test_truncated_photo_is_unreadable(check: object) -> None:
    data = sample_bytes()
    with pytest.raises(UnreadableImage, match="damaged or incomplete"):
        check(data[: len(data) // 2], 10**8)  # type: ignore[operator]


@pytest.mark.parametrize("check", [validate, decode])
def test_decompression_bomb_is_unreadable(check: object) -> None:
    with pytest.raises(UnreadableImage, match="pixels"):
        check(png_bomb(), 50_000_000)  # type: ignore[operator]


def test_validate_reports_format_and_size() -> None:
    with Image.open(sample_photo()) as image:
        size = image.size
    assert validate(sample_bytes(), 10**8) == ("JPEG", size)


def test_prepare_scales_to_the_working_size_and_keeps_the_original_size_in_stats() -> None:
    big = decode(sample_bytes(), 10**8).resize((1200, 900))
    prepared = prepare(big, CONFIG)
    assert max(prepared.image.size) == CONFIG.work_size
    assert (prepared.stats["width"], prepared.stats["height"]) == (1200, 900)


def test_under_exposed_photo_is_lifted_and_bright_one_untouched() -> None:
    photo = decode(sample_bytes("healthy"), 10**8)
    dim = ImageEnhance.Brightness(photo).enhance(0.6)
    dim_luma = image_stats(dim, dim.size)["luma_mean"]
    assert dim_luma < CONFIG.target_luma
    lifted = normalise_brightness(dim, dim_luma, CONFIG)
    assert image_stats(lifted, lifted.size)["luma_mean"] > dim_luma + 10
    bright = Image.new("RGB", (64, 64), (200, 200, 200))
    assert normalise_brightness(bright, 200.0, CONFIG) is bright


def test_stats_are_computed_before_the_lift() -> None:
    dark = ImageEnhance.Brightness(decode(sample_bytes(), 10**8)).enhance(0.2)
    prepared = prepare(dark, CONFIG)
    assert prepared.stats["luma_mean"] < 45
    assert image_stats(prepared.image, prepared.image.size)["luma_mean"] > prepared.stats["luma_mean"]


def test_jpeg_round_trip_helper_is_a_real_jpeg() -> None:
    assert sniff_format(jpeg_bytes(Image.new("RGB", (8, 8)))) == "JPEG"

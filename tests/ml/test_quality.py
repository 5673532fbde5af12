"""The quality gate on real photos: the samples pass, darkened or blurred copies fail with the right reason."""

from pathlib import Path

import pytest
from PIL import Image

from core.config import settings
from ml.degrade import blurred, darkened, washed_out
from ml.imaging import PreprocessConfig, decode, prepare
from ml.quality import leaf_verdict, quality_gate
from schemas.reasons import RejectReason
from tests.utils.factories import SAMPLES

CASSAVA = sorted(SAMPLES.glob("cassava/*/*.jpg"))
LIMITS = settings.quality_thresholds


def verdict(image: Image.Image) -> RejectReason | None:
    return quality_gate(prepare(image, PreprocessConfig()).stats, LIMITS)


def load(path: Path) -> Image.Image:
    return decode(path.read_bytes(), 10**8)


@pytest.mark.parametrize("path", CASSAVA, ids=lambda p: p.name)
def test_real_cassava_photos_pass(path: Path) -> None:
    assert verdict(load(path)) is None


@pytest.mark.parametrize("path", CASSAVA[::5], ids=lambda p: p.name)
def test_darkened_to_a_fifth_is_too_dark(path: Path) -> None:
    assert verdict(darkened(load(path))) == RejectReason.TOO_DARK


@pytest.mark.parametrize("path", CASSAVA[::5], ids=lambda p: p.name)
def test_blurred_is_blurry(path: Path) -> None:
    assert verdict(blurred(load(path))) == RejectReason.BLURRY


@pytest.mark.parametrize("path", CASSAVA[::10], ids=lambda p: p.name)
def test_washed_out_is_too_bright(path: Path) -> None:
    assert verdict(washed_out(load(path))) == RejectReason.TOO_BRIGHT


def test_tiny_photo_is_too_small() -> None:
    assert verdict(load(CASSAVA[0]).resize((120, 90))) == RejectReason.TOO_SMALL


def test_every_reason_has_a_message_a_farmer_can_act_on() -> None:
    for reason in RejectReason:
        assert len(reason.message) > 30
        assert reason.message.endswith(".")


def test_a_leaf_small_in_a_frame_of_soil_is_leaf_too_small() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    grain = rng.normal(0, 25, size=(300, 400, 1))  # light and shade of the soil: textured, not blurry
    soil = (np.array([120, 90, 60]) + grain).clip(0, 255).astype(np.uint8)
    frame = Image.fromarray(soil)
    leaf = load(CASSAVA[0])
    frame.paste(leaf.resize((60, 80)), (170, 110))
    stats = prepare(frame, PreprocessConfig()).stats
    assert quality_gate(stats, LIMITS) is None  # readable: the verdict comes after the model
    assert leaf_verdict(stats, is_leaf=True, limits=LIMITS) == RejectReason.LEAF_TOO_SMALL
    assert leaf_verdict(stats, is_leaf=False, limits=LIMITS) == RejectReason.NOT_CASSAVA_LEAF  # no "come closer"
    frame.paste(leaf.resize((300, 400)).crop((0, 50, 300, 350)), (50, 0))  # now the leaf fills most of it
    assert leaf_verdict(prepare(frame, PreprocessConfig()).stats, is_leaf=True, limits=LIMITS) is None

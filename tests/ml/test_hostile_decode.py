"""The odd files of the hostile corpus that the API accepts decode to the picture they show: colours right (CMYK,
16 bits a sample), the frame the phone meant, and figures the quality gate can compare (never NaN)."""

from __future__ import annotations

import math

import pytest

from core.config import settings
from ml.imaging import PreprocessConfig, decode, prepare
from tests.utils.hostile import CLASSIFIED, CORPUS, Hostile, leaf

ACCEPTED = {item.name: item for item in (make() for make in CORPUS) if not item.refused}
LEAF = prepare(leaf(), PreprocessConfig()).stats


@pytest.mark.parametrize("item", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_files_decode_to_the_picture_they_show(item: Hostile) -> None:
    image = decode(item.data, settings.MAX_IMAGE_PIXELS)
    stats = prepare(image, PreprocessConfig()).stats
    assert all(math.isfinite(value) for value in stats.values()), stats
    if item.expected == CLASSIFIED:  # made from the leaf photo, with its colours
        assert image.size == leaf().size
        for channel in ("red_mean", "green_mean", "blue_mean"):
            assert stats[channel] == pytest.approx(LEAF[channel], abs=3), channel
    if item.name == "grey-16bit.png":  # the leaf's brightness, not clipped to white
        assert stats["luma_mean"] == pytest.approx(LEAF["luma_mean"], abs=3)

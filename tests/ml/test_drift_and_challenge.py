"""Drift scores on real photos, the promotion decision, and a recipe read back from a checkpoint's params."""

from __future__ import annotations

import json
from typing import Any

import pytest
from PIL import Image, ImageEnhance, ImageOps

from ml.challenge import decide
from ml.drift import drift_scores, psi, reference
from ml.imaging import PreprocessConfig, decode, prepare
from ml.train import TrainConfig
from tests.utils.factories import SAMPLES, jpeg_bytes


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [decode(path.read_bytes(), 50_000_000) for path in sorted(SAMPLES.glob("cassava/*/*.jpg"))]


def stats_of(images: list[Image.Image]) -> list[dict[str, float]]:
    return [prepare(image, PreprocessConfig()).stats for image in images]


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert 0 < psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.9, 0.1])


def test_the_same_scenes_sent_again_do_not_drift_and_dusk_photos_do(photos: list[Image.Image]) -> None:
    """Reference and window of the same 50 scenes, mirrored and recompressed by the phone: no alarm (recompression
    moves sharpness a little, brightness not at all). The same scenes at dusk: the brightness statistics drift far
    past the 0.25 alarm line; a window of one class moves the mix."""
    ref = reference(stats_of(photos), {"cmd": 10, "healthy": 10})
    resent = [decode(jpeg_bytes(ImageOps.mirror(p), quality=70), 50_000_000) for p in photos]
    same = drift_scores(ref, stats_of(resent), ["cmd", "healthy"] * 25)
    dusk = drift_scores(ref, stats_of([ImageEnhance.Brightness(p).enhance(0.4) for p in photos]), ["cmd"] * 50)
    assert same["max"] < 0.25, same
    assert same["luma_mean"] < 0.05, same
    assert same["class_mix"] < 0.01, same
    assert dusk["luma_mean"] > 1.0, dusk
    assert dusk["max"] >= dusk["luma_mean"], dusk
    assert dusk["class_mix"] > 0.25, dusk


def figures(accuracy: float, recall: dict[str, float], nrr: float = 0.95) -> dict[str, Any]:
    return {"pooled": {"accuracy": accuracy, "photos": 40, "recall": recall, "negative_rejection_rate": nrr}}


def test_promotes_only_a_model_better_overall_and_on_every_class() -> None:
    champion = figures(0.60, {"cmd": 0.8, "cbsd": 0.5})
    assert decide(champion, figures(0.70, {"cmd": 0.8, "cbsd": 0.6}), 0.02, 0.1).promote
    small = decide(champion, figures(0.61, {"cmd": 0.8, "cbsd": 0.6}), 0.02, 0.1)
    assert not small.promote
    assert "gain +0.010 below" in small.reason
    lost_class = decide(champion, figures(0.70, {"cmd": 0.95, "cbsd": 0.3}), 0.02, 0.1)
    assert not lost_class.promote
    assert "cbsd -0.200" in lost_class.reason
    lets_bananas_in = decide(champion, figures(0.70, {"cmd": 0.8, "cbsd": 0.6}, nrr=0.7), 0.02, 0.1)
    assert not lets_bananas_in.promote
    assert "negatives -0.250" in lets_bananas_in.reason
    nothing = decide(champion, {"pooled": {"photos": 0}}, 0.02, 0.1)
    assert not nothing.promote
    assert "no evaluation photos" in nothing.reason


def test_a_recipe_survives_the_round_trip_through_a_checkpoints_params() -> None:
    recipe = TrainConfig(soup=1, tta_views=4, epochs=7)
    raw = json.loads(json.dumps(recipe.to_dict()))
    assert TrainConfig.from_dict(raw) == recipe
    assert TrainConfig.from_dict({"epochs": 3, "retired_knob": 1}) == TrainConfig(epochs=3)

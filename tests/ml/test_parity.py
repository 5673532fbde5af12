"""One preprocessing definition: training, the workers and the phone build turn the same photo into the same tensor."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.data import PhotoDataset, Sample
from ml.imaging import PreprocessConfig, decode, encode_png, prepare
from ml.phone_build import phone_input
from ml.tensors import model_input
from tests.utils.factories import SAMPLES

PHOTOS = sorted(SAMPLES.glob("cassava/*/*.jpg"))[::7] + sorted(SAMPLES.glob("negatives/*.jpg"))[:2]


def served_by_workers(data: bytes, config: PreprocessConfig) -> torch.Tensor:
    """The photos worker prepares and stores a PNG; the inference worker reads it back and makes the input."""
    stored = encode_png(prepare(decode(data, 10**8), config).image)
    return model_input(Image.open(io.BytesIO(stored)).convert("RGB"), config)


def fed_to_the_phone_graph(data: bytes, config: PreprocessConfig) -> torch.Tensor:
    """What the app feeds the ONNX graph, normalised as the graph's first operations do."""
    pixels = torch.from_numpy(phone_input(prepare(decode(data, 10**8), config).image, config))  # (S, S, 3)
    return (pixels.permute(2, 0, 1) - config.mean) / config.std


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_training_serving_and_phone_see_the_same_tensor(path: Path) -> None:
    config = PreprocessConfig()
    training, _ = PhotoDataset([Sample(path, 0)], config)[0]
    data = path.read_bytes()
    assert training.shape == (3, config.input_size, config.input_size)
    assert torch.equal(training, served_by_workers(data, config))
    assert torch.equal(training, fed_to_the_phone_graph(data, config))


def test_a_dark_photo_is_lifted_the_same_way_everywhere() -> None:
    image = decode(PHOTOS[0].read_bytes(), 10**8)
    dark = Image.fromarray((np.asarray(image) * 0.4).astype(np.uint8))
    buffer = io.BytesIO()
    dark.save(buffer, format="PNG")
    config = PreprocessConfig()
    assert torch.equal(served_by_workers(buffer.getvalue(), config), fed_to_the_phone_graph(buffer.getvalue(), config))
    lifted = prepare(dark, config)
    assert float(np.asarray(lifted.image).mean()) > lifted.stats["luma_mean"] + 10  # the lift did happen

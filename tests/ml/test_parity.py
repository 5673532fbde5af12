"""One preprocessing definition: training, the workers and the phone build turn the same photo into the same tensor."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import settings
from ml.checkpoint import load_checkpoint
from ml.data import PhotoDataset, Sample
from ml.diagnose import examine
from ml.imaging import PreprocessConfig, decode, prepare
from ml.phone_build import phone_input
from ml.predictor import Outputs, Predictor
from tests.utils.factories import SAMPLES

PHOTOS = sorted(SAMPLES.glob("cassava/*/*.jpg"))[::7] + sorted(SAMPLES.glob("negatives/*.jpg"))[:2]


class Recording(Predictor):
    """The shipped model, keeping the batch the serving path hands it."""

    batches: list[torch.Tensor]

    def outputs(self, batch: torch.Tensor) -> Outputs:
        self.batches.append(batch)
        return super().outputs(batch)


@pytest.fixture(scope="module")
def served() -> Recording:
    predictor = Recording(load_checkpoint(settings.model_path))
    predictor.batches = []
    return predictor


def served_by_workers(data: bytes, predictor: Recording) -> torch.Tensor:
    """What the inference worker's one function (`examine`: decode, prepare, quality gate, model) feeds the model."""
    predictor.batches.clear()
    finding = examine(data, predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
    assert finding.model_version is not None, finding.reason  # it reached the model
    (batch,) = predictor.batches
    return batch[0]


def fed_to_the_phone_graph(data: bytes, config: PreprocessConfig) -> torch.Tensor:
    """What the app feeds the ONNX graph, normalised as the graph's first operations do."""
    pixels = torch.from_numpy(phone_input(prepare(decode(data, 10**8), config).image, config))  # (S, S, 3)
    return (pixels.permute(2, 0, 1) - config.mean) / config.std


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_training_serving_and_phone_see_the_same_tensor(path: Path, served: Recording) -> None:
    config = served.preprocess
    training, _ = PhotoDataset([Sample(path, 0)], config)[0]
    data = path.read_bytes()
    assert training.shape == (3, config.input_size, config.input_size)
    assert torch.equal(training, served_by_workers(data, served))
    assert torch.equal(training, fed_to_the_phone_graph(data, config))


def test_a_dark_photo_is_lifted_the_same_way_everywhere(served: Recording) -> None:
    image = decode(PHOTOS[0].read_bytes(), 10**8)
    dark = Image.fromarray((np.asarray(image) * 0.4).astype(np.uint8))
    buffer = io.BytesIO()
    dark.save(buffer, format="PNG")
    config = served.preprocess
    assert torch.equal(served_by_workers(buffer.getvalue(), served), fed_to_the_phone_graph(buffer.getvalue(), config))
    lifted = prepare(dark, config)
    assert float(np.asarray(lifted.image).mean()) > lifted.stats["luma_mean"] + 10  # the lift did happen

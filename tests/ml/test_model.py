"""The backbone is really EfficientNet-Lite0 with its ImageNet weights: it recognises ImageNet things."""

import pytest
import torch
from PIL import Image

from ml.imaging import PreprocessConfig
from ml.model import CassavaNet, ModelConfig, imagenet_state_dict, load_imagenet_backbone
from ml.tensors import to_tensor
from tests.utils.factories import SAMPLES


def test_output_shape_and_parameter_count() -> None:
    model = CassavaNet(ModelConfig()).eval()
    with torch.inference_mode():
        logits = model(torch.zeros(2, 3, 224, 224))
    assert logits.shape == (2, 5)
    assert 3_000_000 < sum(p.numel() for p in model.parameters()) < 4_000_000


def test_backbone_loads_every_pretrained_tensor() -> None:
    model = CassavaNet(ModelConfig())
    load_imagenet_backbone(model)
    pretrained = imagenet_state_dict()
    assert torch.equal(
        model.state_dict()["_blocks.15._project_conv.weight"], pretrained["_blocks.15._project_conv.weight"]
    )


def test_imagenet_weights_recognise_a_dog() -> None:
    model = CassavaNet(ModelConfig(num_classes=1000))
    model.load_state_dict(imagenet_state_dict())
    model.eval()
    with Image.open(SAMPLES / "negatives" / "animal_dog3.jpg") as photo:
        image = photo.convert("RGB").resize((224, 224))
    x = to_tensor(image, PreprocessConfig())
    with torch.inference_mode():
        top5 = model(x[None]).topk(5).indices[0].tolist()
    assert any(151 <= i <= 268 for i in top5), top5  # ImageNet's dog breeds


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_drop_connect_only_in_training(rate: float) -> None:
    model = CassavaNet(ModelConfig(drop_connect=rate)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), model(x))

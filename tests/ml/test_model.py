"""The backbones are really EfficientNet-Lite0, 1 and 2 with their ImageNet weights: they recognise ImageNet things."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from ml.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ml.ensemble import Ensemble
from ml.imaging import PreprocessConfig
from ml.model import BACKBONES, CassavaNet, ModelConfig, imagenet_state_dict, load_imagenet_backbone
from ml.tensors import to_tensor
from tests.utils.factories import SAMPLES


def test_output_shape_and_parameter_count() -> None:
    model = CassavaNet(ModelConfig()).eval()
    with torch.inference_mode():
        logits = model(torch.zeros(2, 3, 224, 224))
    assert logits.shape == (2, 5)
    assert 3_000_000 < sum(p.numel() for p in model.parameters()) < 4_000_000


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_backbone_loads_every_pretrained_tensor(backbone: str) -> None:
    model = CassavaNet(ModelConfig.for_backbone(backbone))
    load_imagenet_backbone(model)
    pretrained = imagenet_state_dict(backbone)
    last = f"_blocks.{len(model._blocks) - 1}._project_conv.weight"
    assert torch.equal(model.state_dict()[last], pretrained[last])


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_imagenet_weights_recognise_a_dog(backbone: str) -> None:
    model = CassavaNet(ModelConfig.for_backbone(backbone, num_classes=1000))
    model.load_state_dict(imagenet_state_dict(backbone))
    model.eval()
    with Image.open(SAMPLES / "negatives" / "animal_dog3.jpg") as photo:
        image = photo.convert("RGB").resize((224, 224))
    x = to_tensor(image, PreprocessConfig())
    with torch.inference_mode():
        top5 = model(x[None]).topk(5).indices[0].tolist()
    assert any(151 <= i <= 268 for i in top5), top5  # ImageNet's dog breeds


def test_an_unknown_backbone_is_refused() -> None:
    with pytest.raises(ValueError, match="lite0, lite1, lite2"):
        ModelConfig.for_backbone("resnet50")


def test_drop_connect_drops_branches_in_training_only() -> None:
    """Stochastic depth: two training passes over one batch differ (each drops its own branches), two evaluation
    passes agree, and without it training is repeatable too. No dropout, so drop connect is the only chance."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    dropping = CassavaNet(ModelConfig(dropout=0.0, drop_connect=0.5))
    steady = CassavaNet(ModelConfig(dropout=0.0, drop_connect=0.0)).train()
    with torch.no_grad():
        assert not torch.equal(dropping.train()(x), dropping(x))
        assert torch.equal(dropping.eval()(x), dropping(x))
        assert torch.equal(steady(x), steady(x))


def test_an_ensemble_joins_embeddings_and_answers_the_geometric_mean() -> None:
    torch.manual_seed(0)
    members = [CassavaNet(ModelConfig.for_backbone(name, head_channels=width)).eval()
               for name, width in (("lite0", 64), ("lite1", 96))]  # fmt: skip
    ensemble = Ensemble(members).eval()
    x = torch.randn(3, 3, 96, 96)
    with torch.inference_mode():
        embedding = ensemble.features(x)
        joined = ensemble(x).softmax(dim=-1)
        alone = [member(x).softmax(dim=-1) for member in members]
    assert embedding.shape == (3, 64 + 96)
    geometric = (alone[0] * alone[1]).sqrt()
    assert torch.allclose(joined, geometric / geometric.sum(dim=-1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="two members"):
        Ensemble(members[:1])


def test_an_ensemble_survives_its_checkpoint(tmp_path: Path) -> None:
    members = [CassavaNet(ModelConfig.for_backbone(name, head_channels=32)).eval() for name in ("lite0", "lite1")]
    saved = Checkpoint(Ensemble(members).eval(), ("a", "b", "c", "d", "e"), PreprocessConfig(), "ens-1")
    save_checkpoint(saved, tmp_path / "ens.pt")
    loaded = load_checkpoint(tmp_path / "ens.pt")
    assert isinstance(loaded.model, Ensemble)
    assert [m.config.backbone for m in loaded.model.nets()] == ["lite0", "lite1"]
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), saved.model(x))

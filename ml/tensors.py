"""From a prepared (working-size) image to the model's input tensor: the one place where pixels become numbers."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ml.imaging import PreprocessConfig, center_square


def to_tensor(image: Image.Image, config: PreprocessConfig) -> torch.Tensor:
    """(H, W) RGB image of exactly input_size -> (3, S, S) float32, normalised as the backbone was trained."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # (S, S, 3)
    return (pixels.permute(2, 0, 1).float() - config.mean) / config.std


def model_input(image: Image.Image, config: PreprocessConfig) -> torch.Tensor:
    """Prepared image -> (3, S, S) model input, as served."""
    return to_tensor(center_square(image, config.input_size), config)

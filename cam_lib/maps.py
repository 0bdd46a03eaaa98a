"""From coefficients to pictures: the CAM map, bilinear upsampling and min-max normalisation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .numerics import safe_divide


def channel_map(alpha: Tensor, activations: Tensor) -> Tensor:
    """``L = ReLU(sum_k alpha_k A_k)``: ``[B, K]`` and ``[B, K, h, w]`` give ``[B, h, w]``."""
    return torch.einsum("bk,bkhw->bhw", alpha, activations).relu()


def minmax(maps: Tensor) -> Tensor:
    """Per-map min-max normalisation to [0, 1] over the last two dims; a constant map becomes zeros."""
    flat = maps.flatten(-2)
    low, high = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    span = high - low
    return safe_divide(flat - low, span).view_as(maps)


def upsample(cam: Tensor, size: tuple[int, ...]) -> Tensor:
    """``up(L)``: bilinear resizing of ``[B, h, w]`` maps to ``size``."""
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def saliency(cam: Tensor, size: tuple[int, ...]) -> Tensor:
    """``s(up(L))``: bilinear upsampling of ``[B, h, w]`` maps to ``size``, then min-max per map."""
    return minmax(upsample(cam, size))

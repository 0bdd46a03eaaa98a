"""Arithmetic that stays finite: one division with a declared value where the quotient is undefined."""
from __future__ import annotations

import torch
from torch import Tensor


def safe_divide(numerator: Tensor, denominator: Tensor, fill: Tensor | float = 0.0,
                defined: Tensor | None = None) -> Tensor:
    """``numerator / denominator`` where ``defined`` (default: ``denominator != 0``), else ``fill``.

    The division runs on a denominator with the undefined places set to 1, so neither the value nor its
    gradient ever meets an ``inf`` or a ``nan`` (``torch.where`` alone would pass a ``nan`` gradient).
    """
    if defined is None:
        defined = denominator != 0
    return torch.where(defined, numerator / torch.where(defined, denominator, torch.ones_like(denominator)), fill)


__all__ = ["safe_divide"]

"""Give a user's model back exactly as it came: training flags and ``requires_grad`` restored."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode with frozen parameters, then restore every flag, even after an error.

    Explanations are games over a fixed function: dropout and batch statistics would make
    ``v(S)`` random, and parameter gradients are never needed (only ``du/dA``).
    """
    training = {module: module.training for module in model.modules()}
    requires_grad = {param: param.requires_grad for param in model.parameters()}
    model.eval()
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for module, flag in training.items():
            module.training = flag
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)

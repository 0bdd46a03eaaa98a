"""Where and how big the book's experiments run: CUDA when present, quick unless asked for full size."""
from __future__ import annotations

import os

import torch

FULL_SIZE_VARIABLE = "SHAPLEY_CAMS_FULL"


def device() -> torch.device:
    """The GPU when there is one, else the CPU: every chapter runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: torch.nn.Module, default: torch.device | None = None) -> torch.device:
    """Where ``model``'s parameters live, so inputs can follow them; ``default`` (else the CPU) for a model
    without parameters."""
    parameter = next(model.parameters(), None)
    if parameter is not None:
        return parameter.device
    return default if default is not None else torch.device("cpu")


def full_size() -> bool:
    """True when ``SHAPLEY_CAMS_FULL=1``: chapters then run at the size of the committed results.

    The default, quick mode keeps each chapter under 90 seconds on 2 CPU cores (CI and nbval).
    """
    return os.environ.get(FULL_SIZE_VARIABLE, "0") == "1"


class _ChannelsLast(torch.nn.Module):
    """Feeds its model channels-last images, the memory layout oneDNN's CPU convolutions run fastest on."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, *extra_inputs: torch.Tensor) -> torch.Tensor:
        return self.model(images.contiguous(memory_format=torch.channels_last), *extra_inputs)


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` for the many forward passes of the metrics: the same function (equal to float
    rounding, about 1e-7 on probabilities), about twice as fast on a CPU.

    Each batch norm is folded into the convolution before it, ``W' = W gamma / sqrt(var + eps)``,
    ``b' = (b - mean) gamma / sqrt(var + eps) + beta`` (eval-mode statistics), and weights and inputs are laid
    out channels-last. A model that ``torch.fx`` cannot trace keeps its batch norms. ``model`` is unchanged.
    """
    import copy

    import torch.fx.experimental.optimization as fx_optimization
    frozen = copy.deepcopy(model).eval()
    try:
        frozen = fx_optimization.fuse(frozen)
    except Exception:  # any tracing failure: the unfused copy computes the same function
        pass
    return _ChannelsLast(frozen.to(memory_format=torch.channels_last)).eval().requires_grad_(False)

"""DeepLIFT's Rescale rule, applied to every element-wise nonlinearity of a forward pass.

DeepLIFT replaces the gradient of ``y = s(x)`` by the multiplier ``(s(x) - s(x')) / (x - x')``
between the input ``x`` and its reference ``x'`` (the gradient where ``|x - x'|`` is tiny).
Linear layers pass multipliers unchanged, so with these multipliers the chain rule gives
contributions that sum to the difference of outputs (summation-to-delta).

The rule is installed with a ``TorchFunctionMode`` rather than module hooks, so it also covers
functional calls (``F.relu``) and a ReLU module used twice, which hook-based DeepLIFT gets wrong.
Inputs and references travel as one batch ``[x; x']``: the first half is explained.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .numerics import safe_divide

NONLINEARITIES = {
    F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_, F.relu6, F.hardtanh, F.leaky_relu,
    F.elu, F.gelu, F.silu, F.mish, F.softplus, F.hardswish, F.hardsigmoid,
    torch.sigmoid, Tensor.sigmoid, torch.tanh, Tensor.tanh,
}
EPS = 1e-7


class _Rescale(torch.autograd.Function):
    """``y = s(x)`` forward; backward multiplies by the Rescale multiplier instead of ``s'(x)``."""

    @staticmethod
    def forward(ctx, x: Tensor, nonlinearity: Callable[[Tensor], Tensor]) -> Tensor:
        y = nonlinearity(x.clone())  # the clone keeps x intact when s works in place
        ctx.save_for_backward(x, y)
        ctx.nonlinearity = nonlinearity
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        x, y = ctx.saved_tensors
        half = x.shape[0] // 2
        dx, dy = x[:half] - x[half:], y[:half] - y[half:]
        with torch.enable_grad():
            point = x[:half].detach().requires_grad_()
            slope, = torch.autograd.grad(ctx.nonlinearity(point.clone()).sum(), point)
        small = dx.abs() < EPS
        multiplier = safe_divide(dy, dx, slope, defined=~small)
        return torch.cat([grad[:half] * multiplier, torch.zeros_like(grad[half:])]), None


class rescale_rule(TorchFunctionMode):
    """Inside ``with rescale_rule():`` backward passes use DeepLIFT-Rescale multipliers."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in NONLINEARITIES and isinstance(args[0], Tensor):
            x, rest = args[0], args[1:]
            return _Rescale.apply(x, lambda value: func(value, *rest, **kwargs))
        return func(*args, **kwargs)


def utility_multiplier(outputs: list[Tensor], values: Tensor) -> list[Tensor]:
    """Multipliers of a scalar utility ``u(y)`` for the first half of each output ``[y; y']``.

    ``u`` mixes all outputs, so no element-wise rule applies; we rescale its gradient ``g`` along the
    path so that summation-to-delta still holds: ``m = g (u(y) - u(y')) / (g . (y - y'))``, the dot product
    over every output tensor. For the logit utility ``g = e_c`` and ``m = g``, DeepLIFT's own treatment of
    a linear output.
    """
    half = values.shape[0] // 2
    found = torch.autograd.grad(values[:half].sum(), outputs, retain_graph=True, allow_unused=True)
    grads = [torch.zeros_like(y[:half]) if g is None else g[:half] for g, y in zip(found, outputs, strict=True)]
    along = torch.stack([(g * (y[:half] - y[half:]).detach()).flatten(1).sum(1)
                         for g, y in zip(grads, outputs, strict=True)]).sum(0)
    delta_value = (values[:half] - values[half:]).detach()
    small = along.abs() < EPS
    scale = safe_divide(delta_value, along, 1.0, defined=~small)
    return [g * scale.view(-1, *[1] * (g.ndim - 1)) for g in grads]

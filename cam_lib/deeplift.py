"""DeepLIFT's Rescale rule, applied to every element-wise nonlinearity of a forward pass.

DeepLIFT replaces the gradient of ``y = s(x)`` by the multiplier ``(s(x) - s(x')) / (x - x')``
between the input ``x`` and its reference ``x'`` (the gradient where ``|x - x'|`` is tiny).
Linear layers pass multipliers unchanged, so with these multipliers the chain rule gives
contributions that sum to the difference of outputs (summation-to-delta).

The rule is installed with a ``TorchFunctionMode`` rather than module hooks, so it also covers
functional calls (``F.relu``) and a ReLU module used twice, which hook-based DeepLIFT gets wrong.
Inputs and references travel as one batch ``[x; x']``: the first half is explained.

Which operations of the head the rules cover, so that summation-to-delta holds:

- affine operations pass multipliers unchanged: convolutions, linear layers, batch norm in eval mode,
  average pooling, sums, concatenations, reshapes, and products or quotients with a value that does not
  depend on the activations;
- the element-wise nonlinearities in ``NONLINEARITIES`` (ReLU, GELU, SiLU, sigmoid, ...) by Rescale;
- max pooling routes the multiplier to each window's maximum: exact when the reference is constant over
  every window, as the zero reference is when pooling comes before any spatial mixing (VGG's heads).

Not covered (``UNCOVERED_MODULES``, ``UNCOVERED_FUNCTIONS``, ``UNCOVERED_METHODS``): normalisation over
features (LayerNorm, GroupNorm), softmax, attention, ``exp``/``log``/``sqrt``, and any product or quotient
of two values that both depend on the activations (attention scores, squeeze-and-excitation gates). With
them in the head, LIFT-CAM's coefficients no longer sum to ``v(N) - v(empty)``: ``uncovered_operations``
finds them in the traced head and ``warn_uncovered`` says so; ``Explanation.local_accuracy_gap`` measures
by how much.
"""
from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from .fxgraph import placeholders
from .numerics import safe_divide

NONLINEARITIES = {
    F.relu, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_, F.relu6, F.hardtanh, F.leaky_relu,
    F.elu, F.gelu, F.silu, F.mish, F.softplus, F.hardswish, F.hardsigmoid,
    torch.sigmoid, Tensor.sigmoid, torch.tanh, Tensor.tanh,
}
EPS = 1e-7
UNCOVERED_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.instancenorm._InstanceNorm,
                     nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.MultiheadAttention)
UNCOVERED_FUNCTIONS = {F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm, F.normalize, F.softmax,
                       F.log_softmax, F.softmin, torch.softmax, torch.log_softmax, F.scaled_dot_product_attention,
                       F.multi_head_attention_forward, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.norm,
                       torch.pow, operator.pow}
UNCOVERED_METHODS = {"softmax", "log_softmax", "exp", "log", "sqrt", "rsqrt", "norm", "pow"}
PRODUCTS = {operator.mul, operator.truediv, operator.matmul, torch.mul, torch.div, torch.matmul, torch.bmm,
            torch.einsum, "mul", "div", "matmul", "bmm"}


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


def uncovered_operations(head: fx.GraphModule) -> tuple[str, ...]:
    """Operations of a traced head, downstream of its first input (the activations), that no rule here covers."""
    activations = placeholders(head.graph)[0]
    dependent, found = {activations}, []
    for node in head.graph.nodes:  # in topological order
        if node is activations or _is_metadata(node) or not any(arg in dependent for arg in node.all_input_nodes):
            continue
        dependent.add(node)
        if node.op == "call_module":
            module = head.get_submodule(node.target)
            if _is_uncovered_module(module):
                found.append(f"{type(module).__name__} ({node.target})")
        elif node.target in PRODUCTS and sum(arg in dependent for arg in tree_leaves((node.args, node.kwargs))) > 1:
            found.append(f"{_name(node.target)} of two values that depend on the activations{_where(node)}")
        elif ((node.op == "call_function" and (node.target in UNCOVERED_FUNCTIONS or "attention" in _name(node.target)))
              or (node.op == "call_method" and node.target in UNCOVERED_METHODS)):
            found.append(f"{_name(node.target)}{_where(node)}")
    return tuple(dict.fromkeys(found))


def _is_metadata(node: fx.Node) -> bool:
    """A shape, size or dtype query: its value does not change with the activations' values."""
    return ((node.op == "call_method" and node.target in ("size", "dim"))
            or (node.op == "call_function" and node.target is getattr
                and node.args[1] in ("shape", "ndim", "dtype", "device")))


def uncovered_modules(modules: Iterable[tuple[str, nn.Module]]) -> tuple[str, ...]:
    """The uncovered modules among ``(name, module)`` pairs: what the hook path sees of a head it cannot trace."""
    return tuple(f"{type(module).__name__} ({name})" for name, module in modules if _is_uncovered_module(module))


def _is_uncovered_module(module: nn.Module) -> bool:
    """A normalisation, softmax or attention module (by type, or ``Attention`` in its class name)."""
    return isinstance(module, UNCOVERED_MODULES) or "attention" in type(module).__name__.lower()


def _name(target: object) -> str:
    """A readable name of an fx node's target (a function or a method name)."""
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _where(node: fx.Node) -> str:
    """`` (in classifier.0)``: the module whose forward the traced operation came from, if fx recorded it."""
    stack = node.meta.get("nn_module_stack")
    return f" (in {next(reversed(stack))})" if stack else ""


def warn_uncovered(operations: tuple[str, ...]) -> None:
    """Warn that DeepLIFT's rules miss some of the head's operations, so summation-to-delta fails."""
    if operations:
        warnings.warn(f"cam_lib: the head holds operations no DeepLIFT rule covers: {', '.join(operations)}. "
                      "LIFT-CAM's coefficients then no longer sum to v(N) - v(empty); "
                      "Explanation.local_accuracy_gap shows by how much.", UserWarning, stacklevel=4)

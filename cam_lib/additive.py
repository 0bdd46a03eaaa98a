"""Heads that are additive over channels up to their first affine layer.

When the head starts with channel-separable operations ``phi`` (ReLU, pooling, batch norm, flatten)
followed by an affine layer ``z = W x + b``, the pre-activation of a coalition is a running sum::

    z(S) = z(empty) + sum_{k in S} t_k,    t_k = W_k (phi_k(A_k) - phi_k(0)).

So a coalition costs one addition of ``t_k`` instead of a pass through the head, and an ordering of
SHAP-CAM is a cumulative sum. This is what makes SHAP-CAM, exact SHAP and Ablation-CAM fast.

When the head ends in a linear layer (the readout ``y = W_out h + b_out``) and the utility is the logit
``u(y) = y_c``, only row ``c`` of the readout is needed: ``u = W_out[c] . h + b_out[c]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .fxgraph import crossing, output_value, placeholders, subgraph

SEPARABLE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.BatchNorm2d,
)
SEPARABLE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.sigmoid, torch.tanh,
    F.hardswish, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout,
}
SEPARABLE_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@dataclass
class AdditiveHead:
    """A head ``F = tail o affine o separable``, with ``separable`` acting on each channel alone."""

    separable: fx.GraphModule
    affine: nn.Linear | nn.Conv2d
    tail: fx.GraphModule
    tail_skips: fx.GraphModule
    is_output: bool  # the affine layer's output is the logits (no tail)
    features: fx.GraphModule | None = None  # the tail up to the readout's input ``h``
    readout: nn.Linear | None = None  # the tail's last layer, when it is linear

    def terms(self, activations: Tensor) -> tuple[Tensor, Tensor]:
        """``z(empty)`` ``[B, *shape]`` and channel terms ``t`` ``[B, K, D]`` (``D``: the affine output, flattened)."""
        batch, channels = activations.shape[:2]
        x = self.separable(activations)
        x0 = self.separable(torch.zeros_like(activations[:1]))
        delta = x - x0
        if isinstance(self.affine, nn.Linear):
            weight = self.affine.weight.view(self.affine.out_features, channels, -1)
            t = torch.einsum("bkp,dkp->bkd", delta.view(batch, channels, -1), weight)
        else:
            t = self._conv_terms(delta)
        z0 = self.affine(x0)
        return z0.expand(batch, *z0.shape[1:]), t.reshape(batch, channels, -1)

    def _conv_terms(self, delta: Tensor) -> Tensor:
        """Each input channel convolved alone: one grouped convolution with ``K`` groups."""
        conv, channels = self.affine, delta.shape[1]
        assert isinstance(conv, nn.Conv2d)  # terms() sends a Linear affine layer to its einsum
        weight = conv.weight.transpose(0, 1).reshape(-1, 1, *conv.weight.shape[2:])
        out = F.conv2d(delta, weight, None, conv.stride, conv.padding, conv.dilation, groups=channels)
        return out.view(delta.shape[0], channels, conv.out_channels, *out.shape[2:])

    def logits(self, z: Tensor, skips: tuple, shape: torch.Size) -> Tensor:
        """Finish the head from pre-activations ``z`` ``[N, D]`` (``shape``: the affine output's)."""
        return OneDnnLinears(self.tail).run(z.view(z.shape[0], *shape), *skips)

    def target_logit(self, z: Tensor, skips: tuple, shape: torch.Size, target: int | Tensor) -> Tensor:
        """``y_c`` alone from pre-activations ``z`` ``[N, D]``: ``W_out[c] . h + b_out[c]``, one row of the readout."""
        assert self.features is not None and self.readout is not None  # the caller checks ``readout``
        features = OneDnnLinears(self.features).run(z.view(z.shape[0], *shape), *skips)
        bias = 0.0 if self.readout.bias is None else self.readout.bias[target]
        return features @ self.readout.weight[target] + bias


class OneDnnLinears(fx.Interpreter):
    """Runs a graph with its linear layers on oneDNN's matmul where it can (CPU, float32, no autograd).

    The same numbers to float rounding (about 1e-6 relative); measured 1.3-1.4x faster than the default BLAS
    (MKL) on this project's AMD CPU, on the ``[P (K + 1), 4096] x [4096, 4096]`` products of SHAP-CAM on VGG-16.
    """

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        """A linear layer on oneDNN when ``_onednn_can_run``; any other module as the graph says."""
        module = self.fetch_attr(str(target))
        if isinstance(module, nn.Linear) and not kwargs and len(args) == 1 and _onednn_can_run(args[0], module):
            return torch.ops.mkldnn._linear_pointwise(args[0], module.weight, module.bias, "none", [], "")
        return super().call_module(target, args, kwargs)


def _onednn_can_run(x: Tensor, linear: nn.Linear) -> bool:
    """oneDNN's fused linear takes float32 matrices on the CPU, and has no backward."""
    return (ONEDNN_LINEAR and isinstance(x, Tensor) and x.is_cpu and x.ndim == 2 and x.is_contiguous()
            and x.dtype == linear.weight.dtype == torch.float32 and not torch.is_grad_enabled())


def _is_flatten(node: fx.Node, module: nn.Module | None) -> bool:
    """``flatten(x, 1)`` in any spelling: channels become contiguous blocks of the vector."""
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    return bool(((node.op == "call_function" and node.target is torch.flatten)
                 or (node.op == "call_method" and node.target == "flatten")) and start == 1)


def _is_separable(node: fx.Node, module: nn.Module | None) -> bool:
    """Acts on each channel alone (so masking a channel before or after it is the same game)."""
    if node.op == "call_module":
        return isinstance(module, SEPARABLE_MODULES) and not getattr(module, "return_indices", False)
    if node.op == "call_function":
        return node.target in SEPARABLE_FUNCTIONS
    return node.op == "call_method" and node.target in SEPARABLE_METHODS


def find_additive(head: fx.GraphModule) -> AdditiveHead | None:
    """Walk the head from its ``activations`` input; return the additive form, or None if there is none."""
    modules = dict(head.named_modules())
    node, flat = placeholders(head.graph)[0], False
    while len(node.users) == 1:
        user = next(iter(node.users))
        module = modules.get(user.target) if user.op == "call_module" else None
        if user.all_input_nodes != [node]:
            return None
        if _is_flatten(user, module):
            flat = True
        elif (isinstance(module, nn.Linear) and flat) or (_is_conv(module) and not flat):
            return _assemble(head, node, user)
        elif not _is_separable(user, module):
            return None
        node = user
    return None


def _is_conv(module: nn.Module | None) -> bool:
    """A dense 2-D convolution with zero padding: affine and channel-mixing."""
    return isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"


def _assemble(head: fx.GraphModule, before: fx.Node, affine: fx.Node) -> AdditiveHead:
    """Cut ``head`` around its first affine node into separable part, affine layer and tail."""
    graph, inputs = head.graph, placeholders(head.graph)
    output = output_value(graph)
    skips = crossing(graph, affine, output)
    separable = fx.GraphModule(head, subgraph(graph, inputs[:1], [before]))
    tail = fx.GraphModule(head, subgraph(graph, [affine, *skips], [output]))
    tail_skips = fx.GraphModule(head, subgraph(graph, inputs[1:], skips, bare=False))
    # a readout: the output is one linear layer's (not a dict or a tuple of outputs)
    readout = isinstance(output, fx.Node) and output.op == "call_module" and affine is not output
    last = head.get_submodule(str(output.target)) if readout else None
    layer = head.get_submodule(str(affine.target))
    assert isinstance(layer, (nn.Linear, nn.Conv2d))  # find_additive cuts only at such layers
    if not isinstance(last, nn.Linear) or len(output.all_input_nodes) != 1:
        return AdditiveHead(separable, layer, tail, tail_skips, affine is output)
    features = fx.GraphModule(head, subgraph(graph, [affine, *skips], output.all_input_nodes))
    return AdditiveHead(separable, layer, tail, tail_skips, False, features, last)

"""Cut a network at one layer: a body ``A = f^[l](x)`` computed once, and a head ``y = F(A)``.

The head is what the channel game evaluates, so it must run on its own: torch.fx traces the
network with the layer kept as a leaf, and values that skip over the layer (residual branches,
other inputs) are computed once by the body. Networks that cannot be traced fall back to forward
hooks: the whole network is re-run with the layer's output replaced.
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from .additive import AdditiveHead, find_additive
from .deeplift import uncovered_modules, uncovered_operations
from .fxgraph import crossing, downstream, leaves, output_value, placeholders, subgraph
from .state import evaluating

Head = Callable[[Tensor, Tensor | None], Tensor]


@dataclass
class Cut:
    """One batch cut at the layer.

    ``head(activations, rows)`` maps activations ``[N, K, h, w]`` to the model's outputs (logits, or the
    dict or tuple it returns); row ``i`` belongs to
    image ``rows[i]`` (``None``: one row per image). ``network(images, rows)`` runs the whole model.
    ``recut(images)`` cuts other images of the same batch (a noisy copy) the same way, extra inputs row for row.
    ``uncovered`` names the head's operations that DeepLIFT's rules do not cover (``deeplift``).
    """

    activations: Tensor
    head: Head
    network: Head
    additive: AdditiveHead | None = None
    tail_skips: Callable[[Tensor | None], tuple] = lambda rows: ()
    recut: Callable[[Tensor], Cut] | None = None
    uncovered: tuple[str, ...] = ()


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """The layer's name and module, or a ValueError that lists the closest names."""
    names = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        found = [name for name, module in names.items() if module is layer]
        if not found:
            raise ValueError("the layer module is not a submodule of the model; pass one of "
                             "model.named_modules(), e.g. by name")
        return found[0], layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or an nn.Module, not {type(layer).__name__}")
    if layer not in names or layer == "":
        close = difflib.get_close_matches(layer, list(names), n=5, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"model has no layer {layer!r}.{hint} Layers: {_summary(list(names)[1:])}; "
                         "cam_lib.spatial_layers(model, images) lists those with [B, K, h, w] output.")
    return layer, names[layer]


def _summary(names: Sequence[str], limit: int = 12) -> str:
    """A short list of names: the first and the last few (the last ones are usual CAM layers)."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join([*names[:4], "...", *names[-(limit - 4):]])


def spatial_layers(model: nn.Module, images: Tensor, extra_inputs: tuple = ()) -> list[tuple[str, tuple]]:
    """Names and output shapes of the layers whose output is a ``[B, K, h, w]`` map (candidate CAM layers)."""
    shapes: dict[str, tuple] = {}

    def record(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if isinstance(output, Tensor) and output.ndim == 4:
                shapes.setdefault(name, tuple(output.shape))
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(images[:1], *(extra[:1] for extra in extra_inputs))
    finally:
        for hook in hooks:
            hook.remove()
    return list(shapes.items())


class _LeafTracer(fx.Tracer):
    """Traces through everything except the explained layer, which stays one node."""

    def __init__(self, leaf: nn.Module):
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return module is self.leaf or super().is_leaf_module(module, qualified_name)


class GraphSplit:
    """Body and head as two fx graphs; the head is evaluated without recomputing the body."""

    def __init__(self, model: nn.Module, name: str, module: nn.Module):
        graph = _LeafTracer(module).trace(model)
        calls = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
        if len(calls) != 1:
            raise ValueError(f"layer {name!r} is called {len(calls)} times in forward")
        layer, output = calls[0], output_value(graph)
        if not downstream(layer) & set(leaves(output)):
            raise ValueError(f"the model's output does not depend on layer {name!r}")
        skips = crossing(graph, layer, output)
        inputs = placeholders(graph)
        from_inputs = set().union(*(downstream(node) for node in inputs)) | set(inputs)
        self.batched = [skip in from_inputs for skip in skips]
        self.body = fx.GraphModule(model, subgraph(graph, inputs, [layer, *skips], bare=False))
        self.head = fx.GraphModule(model, subgraph(graph, [layer, *skips], [output]))
        first = placeholders(self.head.graph)[0]
        self.in_place = any(_in_place(self.head, user) for user in first.users)
        self.additive = find_additive(self.head)
        self.uncovered = uncovered_operations(self.head)
        self.model = model

    def __call__(self, images: Tensor, extra_inputs: tuple) -> Cut:
        with torch.no_grad():
            activations, *skips = self.body(images, *extra_inputs)
        for skip, batched in zip(skips, self.batched):
            if batched and not isinstance(skip, (Tensor, torch.Size, int)):
                raise TypeError("a value skipping over the layer is not a tensor")

        def gather(rows: Tensor | None) -> list:
            # sizes read from the input (x.shape[-2:] for upsampling) are held fixed like parameters
            return [skip[rows] if batched and rows is not None and isinstance(skip, Tensor) else skip
                    for skip, batched in zip(skips, self.batched)]

        def head(acts: Tensor, rows: Tensor | None = None) -> Tensor:
            return self.head(acts.clone() if self.in_place else acts, *gather(rows))

        def tail_skips(rows: Tensor | None) -> tuple:
            return tuple(self.additive.tail_skips(*gather(rows))) if self.additive else ()

        return Cut(activations, head, _network(self.model, extra_inputs), self.additive, tail_skips,
                   recut=lambda other: self(other, extra_inputs), uncovered=self.uncovered)


def _in_place(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    """Would this node overwrite its input (``ReLU(inplace=True)``, ``relu_``)?"""
    if node.op == "call_module":
        return bool(getattr(graph_module.get_submodule(str(node.target)), "inplace", False))
    name = getattr(node.target, "__name__", str(node.target))
    return bool(node.kwargs.get("inplace", False)) or (name.endswith("_") and not name.endswith("__"))


class _Stop(Exception):
    """Raised by a hook to stop the forward pass once the layer's output is captured."""


class HookSplit:
    """Fallback for untraceable networks: the head re-runs the model with the layer's output replaced."""

    additive = None

    def __init__(self, model: nn.Module, name: str, module: nn.Module):
        self.model, self.name, self.module = model, name, module
        self.uncovered: tuple[str, ...] | None = None  # found on the first batch

    def __call__(self, images: Tensor, extra_inputs: tuple) -> Cut:
        captured: list[Tensor] = []

        def grab(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            captured.append(output)
            raise _Stop

        handle = self.module.register_forward_hook(grab)
        try:
            with torch.no_grad():
                self.model(images, *extra_inputs)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"layer {self.name!r} is never called in the model's forward")
        network = _network(self.model, extra_inputs)
        if self.uncovered is None:
            self.uncovered = uncovered_modules(self._modules_after(images[:1], tuple(e[:1] for e in extra_inputs)))
        def head(activations: Tensor, rows: Tensor | None = None) -> Tensor:
            return self._head(images, network, activations, rows)

        return Cut(captured[0], head, network,
                   recut=lambda other: self(other, extra_inputs), uncovered=self.uncovered)

    def _modules_after(self, images: Tensor, extra_inputs: tuple) -> list[tuple[str, nn.Module]]:
        """The modules whose forward starts after the layer's has ended: the head, as far as hooks can see it."""
        modules = dict(self.model.named_modules())
        events = forward_events(self.model, self.module, images, extra_inputs, modules, lambda module: True)
        done = events.index(None) if None in events else len(events)
        return [(name, modules[name]) for name in dict.fromkeys(events[done + 1:]) if name is not None]

    def _head(self, images: Tensor, network: Head, activations: Tensor, rows: Tensor | None) -> Tensor:
        calls = []

        def replace(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            calls.append(1)
            return activations

        handle = self.module.register_forward_hook(replace)
        try:
            logits = network(images if rows is None else images[rows], rows)
        finally:
            handle.remove()
        if len(calls) != 1:
            raise ValueError(f"layer {self.name!r} is called {len(calls)} times in forward; "
                             "CAM needs a layer that runs once")
        return logits


def forward_events(model: nn.Module, layer: nn.Module, images: Tensor, extra_inputs: tuple,
                   modules: Mapping[str, nn.Module], at_start: Callable[[nn.Module], bool]) -> list[str | None]:
    """What happens in one forward pass, in order: the name of each of ``modules`` every time its forward starts
    (where ``at_start(module)``) or ends (elsewhere), and ``None`` every time ``layer``'s forward ends. Which
    modules run after the layer is what the hook path's head and the sanity cascade's blocks are made of.
    The pass runs in eval mode, without gradients."""
    events: list[str | None] = []

    def record(name: str | None) -> Callable[..., None]:
        return lambda module, *arguments: events.append(name)

    hooks = [module.register_forward_pre_hook(record(name)) if at_start(module)
             else module.register_forward_hook(record(name)) for name, module in modules.items()]
    hooks.append(layer.register_forward_hook(record(None)))  # after the hook of the same module, if it is one
    try:
        with evaluating(model), torch.no_grad():
            model(images, *extra_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return events


def _network(model: nn.Module, extra_inputs: tuple) -> Head:
    """The whole model on new images, the other inputs of row ``i`` taken from image ``rows[i]``."""
    def network(images: Tensor, rows: Tensor | None = None) -> Tensor:
        return model(images, *(extra if rows is None else extra[rows] for extra in extra_inputs))
    return network


def split_model(model: nn.Module, layer: str | nn.Module, trace: bool = True) -> GraphSplit | HookSplit:
    """Cut ``model`` at ``layer`` with torch.fx, or with hooks when tracing fails or ``trace=False``."""
    name, module = resolve_layer(model, layer)
    if trace:
        try:
            with evaluating(model):  # fx records `self.training` as a constant: trace the eval-mode network
                return GraphSplit(model, name, module)
        except Exception as error:  # any tracing failure (control flow, unsupported ops): hooks still work
            warn_hooks(model, f"torch.fx cannot trace it ({type(error).__name__}: {str(error)[:200]})")
    return HookSplit(model, name, module)


def warn_hooks(model: nn.Module, reason: str) -> None:
    """Say why the explainer falls back to forward hooks, and what that costs."""
    warnings.warn(f"cam_lib: explaining {type(model).__name__} with forward hooks because {reason}. "
                  "Every coalition then re-runs the whole network instead of the head alone, so Ablation-CAM, "
                  "SHAP-CAM and exact Shapley values are much slower. Pass trace=False to choose hooks "
                  "without this warning.", stacklevel=3)

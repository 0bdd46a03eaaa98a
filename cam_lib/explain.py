"""The one public entry point: ``explain(model, images, layer, method, target, utility)``."""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import maps, smoothing
from .game import ChannelGame
from .layout import Layout, Reshape, get_layout, reshaped, suggestion
from .methods import METHODS
from .numerics import safe_divide
from .runtime import model_device
from .split import GraphSplit, HookSplit, resolve_layer, spatial_layers, split_model, warn_hooks
from .state import evaluating
from .utility import CallableUtility, OutputUtility, resolve, tensor_leaves, utility_name


@dataclass(frozen=True)
class Explanation:
    """What a CAM method says about a batch of images (all tensors detached, on the model's device)."""

    method: str
    utility: str         # the utility's name: "logit", or a callable's name / __name__
    layer: str
    alpha: Tensor        # [B, K] channel coefficients (element-wise methods: per-channel sums of their terms)
    activations: Tensor  # [B, K, h, w] the maps A_k
    cam: Tensor          # [B, h, w] ReLU(sum_k alpha_k A_k), before upsampling
    saliency: Tensor     # [B, H, W] bilinear to the input size, min-max per image to [0, 1]
    target: Tensor       # [B] explained class c (-1 with a callable utility, which picks its own output)
    score: Tensor        # [B] v(N) = u(F(A))
    baseline: Tensor     # [B] v(empty) = u(F(0))
    stderr: Tensor | None = None  # [B, K] standard error of alpha (SHAP-CAM)
    utility_function: Callable | None = field(default=None, repr=False, compare=False)  # a callable utility
    # how the layer was cut, so a metric that explains again (coherency) cuts it the same way
    layout: Layout | None = field(default=None, repr=False, compare=False)  # the layer's output read as maps
    traced: bool = True  # the head was cut by torch.fx (False: forward hooks)

    @property
    def local_accuracy_gap(self) -> Tensor:
        """``|sum_k alpha_k - (v(N) - v(empty))|``: zero for Shapley values and LIFT-CAM."""
        return (self.alpha.sum(1) - (self.score - self.baseline)).abs()

    @property
    def relative_local_accuracy_gap(self) -> Tensor:
        """The gap as a share of what is explained, ``gap / |v(N) - v(empty)|``, so that it compares across
        images, models and utilities (0 where both are 0, ``inf`` where only the change is)."""
        gap, change = self.local_accuracy_gap, (self.score - self.baseline).abs()
        return safe_divide(gap, change, torch.where(gap > 0, torch.inf, 0.0))

    def replay(self, target: Tensor | None = None) -> tuple[Tensor | None, str | OutputUtility]:
        """``(target, utility)`` that explain other images (a masked or augmented copy) as this explanation
        did: its own target (or ``target``) and utility; a callable utility picks its own output, so no target."""
        if self.utility_function is not None:
            return None, self.utility_function
        return (self.target if target is None else target), self.utility


TRACE_TOLERANCE = 1e-4  # the traced head must match the model to this fraction of the outputs' magnitude


class Explainer:
    """A model cut at one layer, ready to explain many batches with any method.

    ``explain`` builds one per call; keep one yourself to pay for tracing once.
    Extra model inputs (a VQA question) are passed per call as ``extra_inputs`` and held fixed:
    the model is called as ``model(images, *extra_inputs)``. ``reshape`` reads a layer whose output is
    not ``[B, K, h, w]`` as maps: ``"vit"`` (tokens), ``"channels-last"`` or a pair (``cam_lib.layout``).
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module, trace: bool = True, reshape: Reshape = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.layer, _ = resolve_layer(model, layer)
        self.layout = get_layout(reshape)
        self.split: GraphSplit | HookSplit = split_model(model, self.layer, trace)
        self._checked = not isinstance(self.split, GraphSplit)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def __call__(self, images: Tensor, method: str = "lift", target: int | Sequence[int] | Tensor | None = None,
                 utility: str | OutputUtility = "logit", batch_size: int = 1024, extra_inputs: tuple = (),
                 aug_smooth: bool = False, eigen_smooth: bool = False, **options) -> Explanation:
        name = method.lower() if isinstance(method, str) else method
        if name not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        _check_options(name, options)
        smoothing.check_flags(aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        if aug_smooth:  # grad-cam's options (cam_lib.smoothing): six augmented images, then their mean map
            return smoothing.augmented(self, images, name, target, utility, batch_size=batch_size,
                                       extra_inputs=extra_inputs, eigen_smooth=eigen_smooth, **options)
        with evaluating(self.model):
            game = self.game(images, target, utility, batch_size, extra_inputs)
            images, target = game.images, game.target
            result = METHODS[name](game, **options)
            alpha, stderr = result if isinstance(result, tuple) else (result, None)
            if alpha.ndim == 4:
                cam, alpha = alpha.sum(1).relu(), alpha.sum((2, 3))
            else:
                cam = maps.channel_map(alpha, game.activations)
            if eigen_smooth:
                cam = smoothing.eigen_smooth(result[0] if isinstance(result, tuple) else result, game.activations)
            return Explanation(
                method=name, utility=utility_name(utility), layer=self.layer, alpha=alpha.detach(),
                activations=game.activations, cam=cam.detach(), saliency=maps.saliency(cam.detach(), images.shape[-2:]),
                target=target, score=game.score, baseline=game.baseline,
                stderr=None if stderr is None else stderr.detach(),
                utility_function=None if isinstance(utility, str) else utility,
                layout=self.layout, traced=isinstance(self.split, GraphSplit))

    def game(self, images: Tensor, target: int | Sequence[int] | Tensor | None = None,
             utility: str | OutputUtility = "logit", batch_size: int = 1024, extra_inputs: tuple = ()) -> ChannelGame:
        """The channel game ``v(S) = u(F(A_S))`` of a batch, checked like ``__call__``'s input.

        Evaluate it with the model in eval mode (``cam_lib.state.evaluating(model)``), as methods do.
        """
        utility_fn = resolve(utility)
        if isinstance(utility_fn, CallableUtility) and target is not None:
            raise ValueError(f"target={target!r} names a class of the logits, but the callable utility "
                             f"{utility_fn.name!r} picks its own output: drop target=, and put the class in the "
                             "utility (lambda y: y[:, c], or cam_lib.utility.segmentation(c))")
        images, extra_inputs = _check_images(images, extra_inputs, self.device)
        with evaluating(self.model):
            try:
                cut = self._cut(images, extra_inputs)
            except RuntimeError as error:
                if "channels" not in str(error):
                    raise
                raise ValueError(f"the model cannot read images of shape {tuple(images.shape)}: {error}. "
                                 "Give the images the channel count the model's first layer expects "
                                 "(grayscale to RGB: images.expand(-1, 3, -1, -1)).") from None
            _check_activations(cut.activations, self.layer, self.model, images, extra_inputs, self.layout is None)
            with torch.no_grad():
                outputs = cut.head(cut.activations)
        if isinstance(utility_fn, CallableUtility):
            target = torch.full((len(images),), -1, dtype=torch.long, device=images.device)
        else:
            target = _check_target(target, outputs)
        return ChannelGame(cut, utility_fn, target, images, batch_size, outputs)

    def _cut(self, images: Tensor, extra_inputs: tuple):
        """Cut the batch (laid out as maps by ``reshape``); on the first call check the traced head."""
        if not self._checked:
            one = torch.zeros(2, dtype=torch.long, device=images.device)
            with torch.no_grad():  # outside the try: an input the model itself cannot read is the caller's error
                direct = self.model(images[one], *(extra[one] for extra in extra_inputs))
            try:
                cut = self.split(images, extra_inputs)
                with torch.no_grad():
                    traced = cut.head(cut.activations[one], one)
                agrees, reason = _outputs_agree(traced, direct)
            except Exception as error:  # a traced graph that cannot run on new batches: use hooks
                agrees, reason = False, f"the traced head fails on this input ({type(error).__name__}: {error})"
            self._checked = True
            if agrees:
                return reshaped(cut, self.layout)
            warn_hooks(self.model, reason)
            self.split = HookSplit(self.model, self.layer, self.model.get_submodule(self.layer))
        return reshaped(self.split(images, extra_inputs), self.layout)


def _outputs_agree(traced: object, direct: object) -> tuple[bool, str]:
    """Do two outputs (tensors, or tuples/dicts of them) agree, every tensor to ``TRACE_TOLERANCE`` of the scale?"""
    traced_leaves, direct_leaves = tensor_leaves(traced), tensor_leaves(direct)
    keys = [list(value) if isinstance(value, Mapping) else None for value in (traced, direct)]
    if [leaf.shape for leaf in traced_leaves] != [leaf.shape for leaf in direct_leaves] or keys[0] != keys[1]:
        return False, "the traced head returns outputs of another structure or shape than the model"
    gap = max(float((a - b).abs().max()) for a, b in zip(traced_leaves, direct_leaves, strict=True))
    # relative to the outputs' scale: convolution kernels differ with the batch size by ~1e-6
    scale = max(float(leaf.abs().max()) for leaf in direct_leaves)
    return gap <= TRACE_TOLERANCE * (1 + scale), f"the traced head differs from the model by {gap:.3g} on this input"


def explain(model: nn.Module, images: Tensor, layer: str | nn.Module, method: str = "lift",
            target: int | Sequence[int] | Tensor | None = None, utility: str | OutputUtility = "logit",
            **options) -> Explanation:
    """Explain ``model``'s decision on ``images`` ``[B, C, H, W]`` with CAM ``method`` at ``layer``.

    ``target``: None (the predicted class), an int, or B ints. ``utility``: "logit", "softmax", "rest", or
    any differentiable function ``outputs -> [B]`` of what the model returns (``cam_lib.utility`` has
    segmentation, regression, embedding and Finer-CAM ones); a callable picks its own output, so it takes
    no ``target``, and the model may then return anything (a dict, a tuple, one value per image).
    Options: ``batch_size`` (coalitions per head call), ``extra_inputs`` (other model inputs, held fixed),
    ``trace=False`` (use hooks instead of torch.fx), ``reshape`` (``"vit"`` for a transformer's tokens,
    ``"channels-last"`` for ``[B, H, W, C]`` maps, or a pair ``(to_maps, from_maps)``: ``cam_lib.layout``),
    grad-cam's ``aug_smooth`` and ``eigen_smooth`` (``cam_lib.smoothing``), and the method's own
    (``n_permutations``, ``seed``).

    >>> exp = explain(model, images, "layer4", method="lift")  # doctest: +SKIP
    >>> exp.saliency.shape, exp.local_accuracy_gap  # doctest: +SKIP
    """
    trace, reshape = options.pop("trace", True), options.pop("reshape", None)
    return Explainer(model, layer, trace, reshape)(images, method, target, utility, **options)


def _check_options(name: str, options: dict) -> None:
    """Reject options the method does not take, listing the ones it does."""
    accepted = list(inspect.signature(METHODS[name]).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"method {name!r} takes no option {unknown}; its options: {accepted or 'none'}")


def _check_images(images: Tensor, extra_inputs: tuple, device: torch.device) -> tuple[Tensor, tuple]:
    """Images must be a finite float batch ``[B, C, H, W]``; extra inputs must match its batch size."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor [B, C, H, W], not {type(images).__name__}")
    if images.ndim != 4:
        hint = " (add a batch dimension: images[None])" if images.ndim == 3 else ""
        raise ValueError(f"images must have shape [B, C, H, W]; got {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor (already preprocessed); got {images.dtype}")
    if len(images) == 0:
        raise ValueError("images is an empty batch [0, C, H, W]; pass at least one image")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf; clean or re-normalise them before explaining")
    extra_inputs = tuple(extra_inputs)
    for extra in extra_inputs:
        if not isinstance(extra, Tensor) or extra.shape[:1] != images.shape[:1]:
            raise ValueError(f"each extra input must be a tensor with the images' batch size {len(images)}")
    return images.detach().clone().to(device), tuple(extra.to(device) for extra in extra_inputs)


def _check_activations(activations: Tensor, layer: str, model: nn.Module, images: Tensor, extra: tuple,
                       advise: bool) -> None:
    """CAM needs a spatial map ``[B, K, h, w]`` at the layer; without ``reshape``, advise one where the shape fits."""
    shape = tuple(activations.shape) if isinstance(activations, Tensor) else type(activations).__name__
    hint = suggestion(shape) if advise and isinstance(activations, Tensor) else ""
    if not isinstance(activations, Tensor) or activations.ndim != 4:
        candidates = [name for name, _ in spatial_layers(model, images, extra)][-5:]
        raise ValueError(f"layer {layer!r} outputs {shape}, but CAM needs a spatial map [B, K, h, w]; "
                         f"layers with spatial output include {candidates}.{hint}")
    if hint:
        warnings.warn(f"cam_lib: layer {layer!r} outputs {shape}, read as [B, K, h, w].{hint}", stacklevel=4)


def _check_target(target: int | Sequence[int] | Tensor | None, logits: object) -> Tensor:
    """``[B]`` class indices: the predicted class by default; checked against the number of classes."""
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else f"a {type(logits).__name__}"
        raise ValueError(f"utilities 'logit', 'softmax' and 'rest' need logits [B, classes]; the model returns "
                         f"{got}. Pass utility=a function outputs -> [B] (cam_lib.utility.segmentation, output_unit, "
                         "cosine_similarity, or your own)")
    batch, classes = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.argmax(1)
    target = torch.as_tensor(target, device=logits.device)
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must be integer class indices, got {target.dtype}")
    target = target.long().reshape(-1).expand(batch) if target.numel() == 1 else target.long().reshape(-1)
    if target.numel() != batch:
        raise ValueError(f"target must be None, one int, or {batch} ints (one per image); got {target.numel()}")
    if (target < 0).any() or (target >= classes).any():
        raise ValueError(f"target {target.tolist()} out of range: the model has {classes} classes (0..{classes - 1})")
    return target.clone()

"""Maps of several layers fused into one: TorchCAM's ``fuse_cams`` (LayerCAM) and RefineCAM.

Both normalise each layer's map ``L^(l)`` to ``[0, 1]`` at its own resolution and resize it bilinearly to the
largest layer resolution; then ``"max"`` (LayerCAM, Jiang et al. 2021, as TorchCAM's ``fuse_cams``) keeps the
element-wise maximum, and ``"product"`` (RefineCAM, Domeniconi et al. 2026, as TorchCAM's ``RefineCAM``)
multiplies them and normalises again, so only what every layer sees survives. Each layer is its own channel
game, with its own players; the fused map is a picture of several games, not the coefficients of one.

>>> fused = fusion.explain_layers(model, images, ["layer2", "layer3", "layer4"], "layercam")  # doctest: +SKIP
>>> fused.saliency.shape  # [B, H, W] in [0, 1]  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from . import maps
from .explain import Explainer, Explanation
from .layout import Reshape

__all__ = ["FUSIONS", "Fusion", "fuse", "explain_layers"]

FUSIONS = ("max", "product")
LAYERCAM_GAMMA = 2.0  # LayerCAM's Eq. 9: tanh(2 L) lifts the faint maps of shallow layers before the maximum


@dataclass(frozen=True)
class Fusion:
    """Several layers' explanations of one batch and their fused map."""

    fusion: str                            # "max" or "product"
    fused: Tensor                          # [B, h, w] at the largest layer resolution
    saliency: Tensor                       # [B, H, W] bilinear to the input size, min-max per image to [0, 1]
    explanations: dict[str, Explanation]  # layer name -> that layer's explanation (all for the same target)


def fuse(cams: Sequence[Tensor], fusion: str = "max", gamma: float | None = None,
         size: tuple[int, int] | None = None) -> Tensor:
    """Fuse maps ``[B, h_l, w_l]`` of several layers: ``[B, h, w]`` at ``size`` (default: the largest).

    ``"max"``: ``max_l up(tanh(gamma s(L^(l))))`` (no tanh when ``gamma`` is None); ``"product"``:
    ``s(prod_l up(s(L^(l))))``. ``s`` is the min-max normalisation of each map, ``up`` bilinear resizing.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
    if isinstance(cams, Tensor) or not cams or any(not isinstance(cam, Tensor) or cam.ndim != 3 for cam in cams):
        raise TypeError("cams must be a non-empty list of [B, h, w] tensors, one per layer")
    if len({cam.shape[0] for cam in cams}) != 1:
        raise ValueError(f"the maps must share their batch size; got {[tuple(cam.shape) for cam in cams]}")
    if gamma is not None and not gamma > 0:
        raise ValueError(f"gamma must be positive (or None for no tanh), got {gamma!r}")
    size = size or (max(cam.shape[1] for cam in cams), max(cam.shape[2] for cam in cams))
    normalised = [maps.minmax(cam) for cam in cams]
    if fusion == "max" and gamma is not None:
        normalised = [torch.tanh(gamma * cam) for cam in normalised]
    resized = torch.stack([maps.upsample(cam, size) for cam in normalised])
    return resized.amax(0) if fusion == "max" else maps.minmax(resized.prod(0))


def explain_layers(model: nn.Module, images: Tensor, layers: Sequence[str | nn.Module], method: str = "layercam",
                   fusion: str = "max", target: int | Sequence[int] | Tensor | None = None,
                   utility: str = "logit", gamma: float | Literal["auto"] | None = "auto", trace: bool = True,
                   reshape: Reshape = None, **options) -> Fusion:
    """Explain ``images`` with ``method`` at each of ``layers`` and fuse the maps (``fuse``).

    The target is the first layer's (by default the predicted class) for every layer. ``gamma="auto"`` is
    LayerCAM's 2 for ``method="layercam"`` with ``fusion="max"``, as TorchCAM, and no tanh (None) otherwise;
    RefineCAM's papers use ``method="gradcam++"`` with ``fusion="product"``. ``trace`` and ``reshape`` (a
    transformer's tokens) cut every layer as in ``Explainer``. Other options go to each explanation
    (``aug_smooth``, ``n_samples``, ...).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
    if isinstance(layers, (str, nn.Module)) or len(layers) < 2:
        raise ValueError("explain_layers fuses at least two layers; pass a list such as ['layer3', 'layer4'] "
                         "(one layer: cam_lib.explain)")
    if gamma == "auto":
        gamma = LAYERCAM_GAMMA if fusion == "max" and str(method).lower() == "layercam" else None
    explanations: dict[str, Explanation] = {}
    for layer in layers:
        explanation = Explainer(model, layer, trace, reshape)(images, method, target, utility, **options)
        target = explanation.target
        explanations[explanation.layer] = explanation
    if len(explanations) != len(layers):
        raise ValueError(f"the layers must be different; got {list(layers)}")
    fused = fuse([explanation.cam for explanation in explanations.values()], fusion, gamma)
    return Fusion(fusion=fusion, fused=fused, saliency=maps.saliency(fused, images.shape[-2:]),
                  explanations=explanations)

"""Reference maps that bracket every method: what a perfect map and a meaningless map score.

A metric can only rank methods if it ranks these first: the ``oracle`` (the ground-truth evidence) must
beat ``random`` noise, or the metric cannot see localisation or faithfulness on this benchmark at all.
Each control makes a map at the explained layer's resolution ``h x w``, like a CAM, and goes through the
same upsampling and min-max normalisation (``maps.saliency``) and the same metric code as the methods.

- ``oracle``: the evidence mask averaged over each CAM cell (the mask, lightly blurred to CAM resolution);
- ``random``: uniform noise per cell, seeded by the image's index, so reruns give the same map;
- ``centre``: a centred Gaussian of standard deviation a quarter of the map (the centre bias);
- ``constant``: one value everywhere, which min-max normalisation turns into the all-zero map.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import maps

Control = Callable[[Tensor, Tensor, tuple[int, int], int], Tensor]
CONTROLS: dict[str, Control] = {}


def register(name: str) -> Callable[[Control], Control]:
    """Add a control to ``CONTROLS``: ``control(evidence [B, H, W], image_ids [B], (h, w), seed) -> [B, h, w]``."""
    def add(control: Control) -> Control:
        CONTROLS[name] = control
        return control
    return add


@register("oracle")
def oracle(evidence: Tensor, image_ids: Tensor, size: tuple[int, int], seed: int) -> Tensor:
    """The fraction of each CAM cell covered by the ground-truth evidence: ``avgpool(mask)`` to ``h x w``."""
    return F.adaptive_avg_pool2d(evidence.float()[:, None], size)[:, 0]


@register("random")
def random(evidence: Tensor, image_ids: Tensor, size: tuple[int, int], seed: int) -> Tensor:
    """Uniform noise per CAM cell, drawn from a generator seeded by ``(seed, image id)``."""
    cells = [torch.rand(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(image)))
             for image in image_ids]
    return torch.stack(cells).to(evidence.device)


@register("centre")
def centre(evidence: Tensor, image_ids: Tensor, size: tuple[int, int], seed: int) -> Tensor:
    """``exp(-r^2 / (2 sigma^2))`` around the map's centre, ``sigma`` a quarter of each side."""
    rows, columns = (torch.linspace(-2, 2, n, device=evidence.device) for n in size)  # in units of sigma
    gaussian = torch.exp(-(rows[:, None] ** 2 + columns[None, :] ** 2) / 2)
    return gaussian.expand(len(evidence), *size)


@register("constant")
def constant(evidence: Tensor, image_ids: Tensor, size: tuple[int, int], seed: int) -> Tensor:
    """Ones everywhere: no pixel is preferred (min-max normalisation makes it the all-zero saliency)."""
    return torch.ones(len(evidence), *size, device=evidence.device)


def saliency(name: str, evidence: Tensor, size: tuple[int, ...], image_ids: Tensor | None = None,
             seed: int = 0) -> Tensor:
    """Control ``name``'s saliency ``[B, H, W]``: its ``h x w`` map upsampled and normalised like a CAM's.

    ``evidence``: ground-truth masks ``[B, H, W]`` (only the oracle reads them; they fix the output size);
    ``size``: the explained layer's ``(h, w)``; ``image_ids``: each image's index in its data set (seeds
    ``random``; default ``0..B-1``).
    """
    if name not in CONTROLS:
        raise ValueError(f"unknown control {name!r}; choose one of {list(CONTROLS)}")
    if not isinstance(evidence, Tensor) or evidence.ndim != 3:
        raise ValueError(f"evidence must be masks [B, H, W]; got {tuple(getattr(evidence, 'shape', ()))}")
    image_ids = torch.arange(len(evidence)) if image_ids is None else torch.as_tensor(image_ids).reshape(-1)
    cam = CONTROLS[name](evidence, image_ids, (size[0], size[1]), seed)
    return maps.saliency(cam.to(evidence.device, torch.float32), evidence.shape[-2:])


__all__ = ["CONTROLS", "register", "oracle", "random", "centre", "constant", "saliency"]

"""Figures people look at: saliency overlays, a grid of methods, coefficient bars.

Tensors leave torch only here, at the last moment, for matplotlib.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor


def overlay(ax: Axes, pixels: Tensor, saliency: Optional[Tensor] = None, title: str = "",
            opacity: float = 0.5, contour: Optional[Tensor] = None) -> Axes:
    """Draw an image ``[3, H, W]`` in [0, 1] with a saliency map ``[H, W]`` in [0, 1] over it.

    ``contour`` (a ``[H, W]`` mask) outlines the ground-truth object in white.
    """
    ax.imshow(pixels.detach().permute(1, 2, 0).cpu().numpy())
    if saliency is not None:
        ax.imshow(saliency.detach().cpu().numpy(), cmap="jet", alpha=opacity, vmin=0, vmax=1)
    if contour is not None:
        ax.contour(contour.detach().float().cpu().numpy(), levels=[0.5], colors="white", linewidths=1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def method_grid(pixels: Tensor, saliencies: Mapping[str, Tensor], masks: Optional[Tensor] = None,
                row_titles: Optional[Sequence[str]] = None, size: float = 1.9) -> Figure:
    """Images in rows, the input then one column per method: ``saliencies[name]`` is ``[B, H, W]``."""
    rows, columns = len(pixels), len(saliencies) + 1
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for row in range(rows):
        contour = None if masks is None else masks[row]
        overlay(axes[row, 0], pixels[row], title=row_titles[row] if row_titles else "input", contour=contour)
        for column, (name, maps) in enumerate(saliencies.items(), start=1):
            overlay(axes[row, column], pixels[row], maps[row], title=name if row == 0 else "", contour=contour)
    figure.tight_layout()
    return figure


def alpha_bars(ax: Axes, alphas: Mapping[str, Tensor], top: int = 20, errors: Optional[Tensor] = None) -> Axes:
    """Channel coefficients of several methods side by side, for the ``top`` channels of the first one.

    ``errors`` (standard errors of the first method) draw error bars.
    """
    reference = next(iter(alphas.values())).detach().cpu()
    order = reference.abs().argsort(descending=True)[:top]
    width = 0.8 / len(alphas)
    positions = torch.arange(len(order)).float()
    for index, (name, alpha) in enumerate(alphas.items()):
        yerr = errors.detach().cpu()[order].numpy() if errors is not None and index == 0 else None
        ax.bar((positions + index * width).numpy(), alpha.detach().cpu()[order].numpy(), width, label=name, yerr=yerr)
    ax.set_xticks((positions + 0.4 - width / 2).numpy(), [str(k) for k in order.tolist()], fontsize=7)
    ax.set_xlabel("channel k (largest first)")
    ax.set_ylabel(r"$\alpha_k$")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    return ax

"""Figures people look at: saliency overlays, a grid of methods, coefficient bars, metric intervals.

Tensors leave torch only here, at the last moment, for matplotlib.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor


def overlay(ax: Axes, pixels: Tensor, saliency: Tensor | None = None, title: str = "",
            opacity: float = 0.5, contour: Tensor | None = None) -> Axes:
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


def method_grid(pixels: Tensor, saliencies: Mapping[str, Tensor], masks: Tensor | None = None,
                row_titles: Sequence[str] | None = None, size: float = 1.9) -> Figure:
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


def alpha_bars(ax: Axes, alphas: Mapping[str, Tensor], top: int = 20, errors: Tensor | None = None) -> Axes:
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


def metric_label(name: str) -> str:
    """A metric's name, unit and direction, from ``metrics.METRICS``: ``"ad (%; lower is better)"``."""
    from .metrics import METRICS
    spec = METRICS[name]
    return f"{name} ({spec.unit}; {'higher' if spec.higher_is_better else 'lower'} is better)"


def interval_plot(summary: pd.DataFrame, names: Sequence[str], models: Sequence[str], order: Sequence[str],
                  title: str, grey: Sequence[str] = (), paper: pd.DataFrame | None = None) -> Figure:
    """Means and 95 % intervals of ``summary`` (``metrics.summarise``'s columns ``model, method, metric,
    mean, low, high``), a panel per (model, metric), one row per method in ``order``; methods in ``grey``
    (the controls) are grey. ``paper`` (columns ``model, method, metric, value``: the model row it is set
    beside) adds a paper's numbers as open red diamonds, on a top axis of their own: another network on
    another dataset, to compare in order and direction, not in value."""
    shown = [m for m in order if m in set(summary.method)]
    figure, axes = plt.subplots(len(models), len(names), squeeze=False, sharey=True,
                                figsize=(3.6 * len(names), 1.0 + (0.8 + 0.22 * len(shown)) * len(models)))
    for row, model in enumerate(models):
        for column, name in enumerate(names):
            ax = axes[row, column]
            rows = summary[(summary.model == model) & (summary.metric == name) & summary.method.isin(shown)]
            for method, found in rows.set_index("method").iterrows():
                ax.errorbar(found["mean"], shown.index(method), fmt="o", capsize=3,
                            xerr=[[found["mean"] - found["low"]], [found["high"] - found["mean"]]],
                            color="grey" if method in grey else "tab:blue")
            reported = None if paper is None else paper[(paper.model == model) & (paper.metric == name)
                                                        & paper.method.isin(shown)]
            if reported is not None and len(reported):
                twin = ax.twiny()
                twin.plot(reported.value, [shown.index(m) for m in reported.method], "D", color="tab:red",
                          fillstyle="none", label="paper")
                twin.tick_params(axis="x", colors="tab:red", labelsize=7)
            ax.set_title(f"{model}\n{metric_label(name)}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(range(len(shown)), shown)
    axes[0, 0].invert_yaxis()
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure

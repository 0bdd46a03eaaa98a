"""Concept figures: pictures of the ideas (the cut, a coalition, an ordering, LIFT-CAM's pass), drawn from
the same tensors the methods use, so a figure cannot disagree with the numbers beside it.

``viz`` plots results; this module draws how they come about. Each function returns a matplotlib figure.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from torch import Tensor

PLAYER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
ABSENT = "#d9d9d9"


def _box(ax: Axes, x: float, y: float, width: float, height: float, text: str, colour: str = "#f2f2f2") -> None:
    """A rounded box with centred text, in data coordinates."""
    ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="black", linewidth=1))
    ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
           colour: str = "black", style: str = "-|>") -> None:
    """An arrow from ``start`` to ``end`` with an optional label above its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=colour, linewidth=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=8, color=colour)


def _maps(ax: Axes, x: float, y: float, present: Sequence[bool], size: float = 0.42, step: float = 0.12) -> None:
    """A stack of activation maps ``A_1 .. A_K`` drawn as offset squares, absent ones greyed out."""
    for k, here in reversed(list(enumerate(present))):
        colour = PLAYER_COLOURS[k % len(PLAYER_COLOURS)] if here else ABSENT
        ax.add_patch(Rectangle((x + k * step, y + k * step), size, size, facecolor=colour, edgecolor="black",
                               alpha=0.85 if here else 0.6, linewidth=0.8))
    top = len(present) - 1
    ax.text(x + top * step + size / 2, y + top * step + size + 0.08, f"$A_1 \\ldots A_{{{len(present)}}}$",
            ha="center", va="bottom", fontsize=9)


def _canvas(width: float, height: float, inches: tuple[float, float]) -> tuple[Figure, Axes]:
    figure, ax = plt.subplots(figsize=inches)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return figure, ax


def body_head_cut(players: int = 5) -> Figure:
    """The network ``f = F o body`` cut at the explained layer: the body makes the maps ``A_k``, the head
    ``F`` and the utility ``u`` turn them into the number being explained, ``v(N) = u(F(A))``."""
    figure, ax = _canvas(10, 2.6, (9, 2.4))
    _box(ax, 0.1, 0.8, 1.1, 0.9, "image $x$", "#ffffff")
    _box(ax, 1.8, 0.8, 1.6, 0.9, "body\n(layers up to $\\ell$)")
    _maps(ax, 4.0, 0.75, [True] * players)
    _box(ax, 6.2, 0.8, 1.5, 0.9, "head $F$\n(layers after $\\ell$)")
    _box(ax, 8.3, 0.8, 1.5, 0.9, "$u(F(A))$\n(a number)", "#ffffff")
    _arrow(ax, (1.2, 1.25), (1.8, 1.25))
    _arrow(ax, (3.4, 1.25), (4.0, 1.25))
    _arrow(ax, (5.1, 1.25), (6.2, 1.25))
    _arrow(ax, (7.7, 1.25), (8.3, 1.25), "$u$")
    ax.plot([3.7, 3.7], [0.3, 2.4], linestyle="--", color="#d62728", linewidth=1.2)
    ax.text(3.75, 2.25, "the cut at layer $\\ell$", color="#d62728", fontsize=8, va="bottom")
    ax.text(4.6, 0.45, "players: the $K$ maps", ha="center", fontsize=8)
    ax.set_title("CAM cuts the network at one layer: the maps before the cut are the players of a game",
                 fontsize=10)
    return figure


def coalition(activations: Tensor, members: Sequence[int], value: float) -> Figure:
    """A coalition ``S`` as masked channels: ``A_S`` keeps the maps of ``S`` and sets the others to 0
    (the absent value), and the head pays ``v(S) = u(F(A_S))``. ``activations``: ``[K, h, w]``."""
    players = activations.shape[0]
    figure, axes = plt.subplots(1, players + 1, figsize=(1.7 * (players + 1), 2.0),
                                gridspec_kw={"width_ratios": [1] * players + [1.3]})
    high = float(activations.abs().max()) or 1.0
    for k, ax in enumerate(axes[:players]):
        kept = k in members
        shown = activations[k] if kept else torch.zeros_like(activations[k])
        ax.imshow(shown.detach().cpu().numpy(), cmap="viridis", vmin=0, vmax=high)
        ax.set_title(f"$A_{k + 1}$" + ("" if kept else " (absent: 0)"), fontsize=9,
                     color="black" if kept else "grey")
        ax.set_xticks([])
        ax.set_yticks([])
    names = ", ".join(str(k + 1) for k in sorted(members)) or "\\emptyset"
    axes[-1].set_axis_off()
    axes[-1].text(0.5, 0.5, f"$S = \\{{{names}\\}}$\n\n$v(S) = u(F(A_S))$\n$= {value:g}$", ha="center",
                  va="center", fontsize=10, transform=axes[-1].transAxes)
    figure.suptitle("A coalition is a set of channels; the others are replaced by 0", fontsize=10)
    figure.tight_layout()
    return figure


def ordering_walk(values: Tensor, ordering: Sequence[int]) -> Figure:
    """One ordering of SHAP-CAM's Algorithm 1: players join one at a time, and each is credited with the
    rise it causes, ``v(S u {k}) - v(S)``; the steps add up to ``v(N) - v(empty)`` whatever the order.

    ``values``: ``[2^K]`` coalition values indexed by the bit mask ``sum_{k in S} 2^k``
    (``cam_lib.shapley.all_coalitions`` order).
    """
    mask, heights = 0, [float(values[0])]
    for k in ordering:
        mask |= 1 << k
        heights.append(float(values[mask]))
    figure, ax = plt.subplots(figsize=(6.2, 3.2))
    steps = range(len(heights))
    ax.step(list(steps), heights, where="post", color="black", linewidth=1)
    ax.scatter(list(steps), heights, color="black", zorder=3)
    for step, k in enumerate(ordering, start=1):
        rise = heights[step] - heights[step - 1]
        colour = PLAYER_COLOURS[k % len(PLAYER_COLOURS)]
        ax.annotate("", xy=(step, heights[step]), xytext=(step, heights[step - 1]),
                    arrowprops=dict(arrowstyle="-|>", color=colour, linewidth=2))
        ax.text(step + 0.06, (heights[step] + heights[step - 1]) / 2, f"player {k + 1}: {rise:+g}", color=colour,
                fontsize=9, va="center")
    ax.set_xticks(list(steps), ["$\\emptyset$"] + [f"+ {k + 1}" for k in ordering])
    ax.set_xlim(-0.3, len(heights) - 0.2)
    ax.set_xlabel("players join in the order " + " -> ".join(str(k + 1) for k in ordering))
    ax.set_ylabel("$v(S)$")
    ax.set_title("One ordering: each player is credited with the rise it causes", fontsize=10)
    figure.tight_layout()
    return figure


def lift_backward(activations: Tensor, multipliers: Tensor, output_delta: float) -> Figure:
    """LIFT-CAM's one pass: run the head on ``A`` and on the reference ``A' = 0``, then send DeepLIFT
    multipliers ``m`` back through the head; channel ``k`` gets ``alpha_k = sum_ij m_k(i,j) (A_k - A'_k)(i,j)``,
    and the alphas sum to ``u(F(A)) - u(F(0))`` (summation-to-delta).

    ``activations`` and ``multipliers``: ``[K, h, w]`` (``ChannelGame.deeplift_multipliers`` of one image).
    """
    players = len(activations)
    alpha = (multipliers * activations).sum((-2, -1))
    top = 1.0 + 0.55 * players
    figure, ax = _canvas(11, top + 0.2, (9.5, 0.9 + 0.45 * players))
    _box(ax, 0.1, top - 0.55, 2.4, 0.5, "forward: $A$ and $A' = 0$", "#ffffff")
    _box(ax, 8.9, top - 0.55, 2.0, 0.5, f"$\\Delta u = {output_delta:.4g}$", "#ffffff")
    _box(ax, 3.6, 0.2, 4.6, top - 0.2, "head $F$ with DeepLIFT-Rescale:\n"
         "each ReLU passes $m = \\Delta y / \\Delta x$\ninstead of its gradient")
    _arrow(ax, (2.5, top - 0.3), (3.6, top - 0.3))
    _arrow(ax, (8.2, top - 0.3), (8.9, top - 0.3))
    for k in range(players):
        y = 0.35 + 0.55 * (players - 1 - k)
        colour = PLAYER_COLOURS[k % len(PLAYER_COLOURS)]
        _arrow(ax, (3.6, y), (3.0, y), colour=colour)
        ax.text(0.1, y, f"$\\alpha_{{{k + 1}}} = \\sum_{{ij}} m \\, \\Delta A_{{{k + 1}}} = {float(alpha[k]):.4g}$",
                va="center", fontsize=9, color=colour)
    ax.text(9.9, 0.3, f"$\\sum_k \\alpha_k = {float(alpha.sum()):.4g}$", ha="center", fontsize=9)
    ax.set_title("LIFT-CAM: one forward pass on two inputs, one backward pass of multipliers", fontsize=10)
    return figure


__all__ = ["body_head_cut", "coalition", "ordering_walk", "lift_backward", "PLAYER_COLOURS"]

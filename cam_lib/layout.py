"""Layers whose output is not ``[B, K, h, w]`` (transformer tokens, channels-last maps) seen as activation maps.

A ``Layout`` is a pair of functions: ``to_maps(output)`` lays the layer's output out as maps
``A`` ``[B, K, h, w]``, and ``from_maps(A, output)`` puts maps back into the layer's own layout, taking
whatever is not a player (a ViT's class and register tokens) from the original ``output``. The cut's
head is wrapped as ``A -> F(from_maps(A, output))``, so the channel game and every method see ordinary
activation maps and the players are the K channels of the maps::

    v(S) = u(F(from_maps(A_S, output)))

A pair of your own, for tokens stored patches first with the class token last (``explain(...,
reshape=(to_maps, from_maps))``)::

    to_maps = lambda tokens: tokens[:, :-1].transpose(1, 2).unflatten(2, (14, 14))
    from_maps = lambda maps, tokens: torch.cat([maps.flatten(2).transpose(1, 2), tokens[:, -1:]], 1)
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .split import Cut


@dataclass(frozen=True)
class Layout:
    """``to_maps(output) -> [B, K, h, w]`` and its inverse ``from_maps(maps, output) -> output's layout``."""

    to_maps: Callable[[Tensor], Tensor]
    from_maps: Callable[[Tensor, Tensor], Tensor]


_CHANNELS_LAST_HINT = 'If these are [B, H, W, C] maps (Swin, ConvNeXt blocks), pass reshape="channels-last".'
Reshape = str | Layout | tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]] | None


def patch_grid(tokens: int, registers: int | None = None) -> tuple[int, int] | None:
    """``(R, s)`` with ``tokens = 1 + R + s * s``, or None; without ``registers``, the largest grid, if ``R < s``."""
    patches = tokens - 1
    if registers is None:
        side = math.isqrt(max(patches, 0))
        registers = patches - side * side
        return (registers, side) if 0 <= registers < side else None
    side = math.isqrt(max(patches - registers, 0))
    return (registers, side) if registers >= 0 and side > 0 and side * side == patches - registers else None


def _grid(tokens: Tensor, registers: int | None) -> tuple[int, int]:
    """``(R, s)`` of tokens ``[B, 1 + R + s*s, C]``, or a ValueError that says which layout to pass instead."""
    grid = patch_grid(tokens.shape[1], registers) if tokens.ndim == 3 else None
    if grid is not None:
        return grid
    problem = f"reshape='vit' reads tokens [B, 1 + R + h*w, C], but the layer outputs {tuple(tokens.shape)}"
    if tokens.ndim != 3:
        raise ValueError(f"{problem}. {_CHANNELS_LAST_HINT if tokens.ndim == 4 else ''}")
    if registers is None:
        raise ValueError(f"{problem}: {tokens.shape[1]} tokens are not a class token, R register tokens and a square "
                         "grid of patches with R less than the grid's side. Give the register count "
                         "(reshape=cam_lib.layout.vit(registers=R)) or a pair (to_maps, from_maps).")
    raise ValueError(f"{problem}, not 1 + {registers} registers + a square grid. Pass the layer's own register count, "
                     "or a pair (to_maps, from_maps) for other layouts.")


def vit(registers: int | None = None) -> Layout:
    """ViT tokens ``[B, 1 + R + h*w, C]``: the patch tokens' C channels are the players ``[B, C, h, w]``.

    The class token and the R register tokens are held fixed at their values, as the question a
    CAM asks is which patches' features made the class token's answer. ``registers=None`` reads
    ``R`` as what is left after the largest square grid of patches, and accepts it only if ``R < h``.
    A grid that is not square (a non-square image) needs a pair ``(to_maps, from_maps)`` of your own.
    """
    def to_maps(tokens: Tensor) -> Tensor:
        fixed, side = _grid(tokens, registers)
        return tokens[:, 1 + fixed:].transpose(1, 2).unflatten(2, (side, side))

    def from_maps(maps: Tensor, tokens: Tensor) -> Tensor:
        fixed, _ = _grid(tokens, registers)
        return torch.cat([tokens[:, :1 + fixed], maps.flatten(2).transpose(1, 2)], 1)

    return Layout(to_maps, from_maps)


def _channels_first(maps: Tensor) -> Tensor:
    """``[B, H, W, C] -> [B, C, H, W]``: the layout of torchvision's Swin stages and ConvNeXt block internals."""
    if maps.ndim != 4:
        raise ValueError(f"reshape='channels-last' needs maps [B, H, W, C], but the layer outputs "
                         f"{tuple(maps.shape)}.{suggestion(tuple(maps.shape))}")
    return maps.permute(0, 3, 1, 2)


CHANNELS_LAST = Layout(_channels_first, lambda maps, output: maps.permute(0, 2, 3, 1))
PRESETS = {"vit": vit(), "channels-last": CHANNELS_LAST}


def get_layout(reshape: Reshape) -> Layout | None:
    """The layout named by ``reshape``: None, a preset name, a ``Layout`` or a pair ``(to_maps, from_maps)``."""
    if reshape is None or isinstance(reshape, Layout):
        return reshape
    if isinstance(reshape, str) and reshape.lower() in PRESETS:
        return PRESETS[reshape.lower()]
    if isinstance(reshape, tuple) and len(reshape) == 2 and all(callable(part) for part in reshape):
        return Layout(*reshape)
    raise ValueError(f"reshape must be None, one of {list(PRESETS)}, or a pair of callables (to_maps, from_maps); "
                     f"got {reshape!r}")


def reshaped(cut: Cut, layout: Layout | None) -> Cut:
    """The cut seen through ``layout``: activations ``to_maps(A)``, head ``F(from_maps(maps, A[rows]))``.

    The additive form of the head reads the layer's own layout, so it is dropped (coalitions go
    through the head).
    """
    if layout is None:
        return cut
    output = cut.activations
    maps = layout.to_maps(output)
    if not isinstance(maps, Tensor) or maps.ndim != 4:
        raise ValueError(f"reshape's to_maps must return maps [B, K, h, w]; it returned "
                         f"{tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__}")
    if not torch.equal(layout.from_maps(maps, output), output):
        raise ValueError("reshape's from_maps(to_maps(output), output) does not give the layer's output back; "
                         "from_maps must invert to_maps")

    def head(activations: Tensor, rows: Tensor | None = None) -> Tensor:
        return cut.head(layout.from_maps(activations, output if rows is None else output[rows]), rows)

    def recut(images: Tensor) -> Cut:
        assert cut.recut is not None
        return reshaped(cut.recut(images), layout)

    return dataclasses.replace(cut, activations=maps.contiguous(), head=head, additive=None,
                               recut=recut if cut.recut is not None else None)


def suggestion(shape: tuple[int, ...]) -> str:
    """The preset that would read an output of this shape, as advice for an error message ('' if none)."""
    grid = patch_grid(shape[1]) if len(shape) == 3 else None
    if grid is not None:
        return f' Tokens [B, 1 + R + h*w, C]: pass reshape="vit" to explain the {grid[1]}x{grid[1]} patch tokens.'
    if len(shape) == 4 and shape[1] == shape[2] < shape[3]:
        return " " + _CHANNELS_LAST_HINT
    return ""

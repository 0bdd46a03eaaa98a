"""Every CAM method of both papers, each one short function of the channel game.

A method returns ``alpha`` ``[B, K]`` (its map is ``ReLU(sum_k alpha_k A_k)``) or element-wise terms
``[B, K, h, w]`` (its map is ``ReLU(sum_k terms_k)``); SHAP-CAM also returns the standard error of
``alpha``. Adding a method is one decorated function here.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from . import maps
from .game import ChannelGame
from .numerics import safe_divide
from .shapley import MAX_EXACT_PLAYERS, all_coalitions, exact_shapley, permutation_estimate, random_orderings
from .utility import CallableUtility

Method = Callable[..., Tensor | tuple[Tensor, Tensor]]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Add a method to ``METHODS`` under ``name`` in lower case (``explain`` looks names up lower-cased)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a method needs a non-empty name, got {name!r}")

    def add(method: Method) -> Method:
        METHODS[name.strip().lower()] = method
        return method
    return add


@register("cam")
def cam(game: ChannelGame) -> Tensor:
    """CAM (Zhou et al. 2016): ``alpha_k = w_{c,k}``, the weights of a head that is GAP + one linear layer."""
    if isinstance(game.utility, CallableUtility):
        raise ValueError(f"method 'cam' reads the weight row w_c of the explained class c, and the callable utility "
                         f"{game.utility.name!r} names no class. Use utility='logit' with target=c, or 'gradcam' or "
                         "'lift', which equal CAM on such heads and take any utility.")
    additive, activations = game.cut.additive, game.activations
    pooled = additive.separable(activations) if additive is not None else None
    if (additive is None or not additive.is_output or not isinstance(additive.affine, nn.Linear)
            or pooled.shape != activations.shape[:2]
            or not torch.allclose(pooled, activations.mean((2, 3)), rtol=1e-4, atol=1e-6)):
        raise ValueError("method 'cam' needs a head made of global average pooling and one linear layer; "
                         "this head is not. Use 'gradcam' (which equals CAM on such heads) or 'lift'.")
    return additive.affine.weight[game.target]


@register("gradcam")
def gradcam(game: ChannelGame) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``alpha_k = mean_ij g_kij``."""
    return game.gradient.mean((2, 3))


@register("gradcam++")
def gradcam_plus_plus(game: ChannelGame) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018): ``alpha_k = sum_ij a_kij ReLU(g_kij)``,
    ``a = g^2 / (2 g^2 + sum_ab A_kab g^3)`` (0 where the denominator is 0)."""
    grad, activations = game.gradient, game.activations
    denominator = 2 * grad ** 2 + activations.sum((2, 3), keepdim=True) * grad ** 3
    return (safe_divide(grad ** 2, denominator) * grad.relu()).sum((2, 3))


@register("xgradcam")
def xgradcam(game: ChannelGame) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): ``alpha_k = sum_ij A_kij g_kij / sum_ab A_kab``."""
    activations = game.activations
    return safe_divide((activations * game.gradient).sum((2, 3)), activations.sum((2, 3)))


@register("hirescam")
def hirescam(game: ChannelGame) -> Tensor:
    """HiResCAM (Draelos & Carin 2020): element-wise terms ``g_k * A_k``, the first-order Shapley values."""
    return game.gradient * game.activations


@register("scorecam")
def scorecam(game: ChannelGame, masks_per_call: int = 32) -> Tensor:
    """Score-CAM (Wang et al. 2020): ``alpha_k = u(f(x * s(up(A_k))))``, each normalised map masking the input.

    Wang et al. use the softmax utility (``utility="softmax"``); ``masks_per_call`` masked images, of one
    or several images, go through the whole network at once (32 measured faster than 256 on a CPU:
    ``benchmarks/metrics_speed.py``).
    """
    images, activations = game.images, game.activations
    batch, players = activations.shape[:2]
    masks = maps.saliency(activations.flatten(0, 1), images.shape[-2:])[:, None]  # [B K, 1, H, W]
    rows = torch.arange(batch, device=images.device).repeat_interleave(players)
    with torch.no_grad():
        alpha = torch.cat([game.network_value(images[index] * masks[pairs], index)
                           for pairs, index in zip(torch.arange(batch * players, device=images.device)
                                                   .split(masks_per_call), rows.split(masks_per_call))])
    return alpha.view(batch, players)


@register("ablation")
def ablation(game: ChannelGame) -> Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``alpha_k = (v(N) - v(N minus k)) / v(N)``, one ordering's marginal."""
    players = game.num_players
    without = game.coalition_values(1 - torch.eye(players, device=game.activations.device))
    return (game.score[:, None] - without) / game.score[:, None]


@register("lift")
def lift(game: ChannelGame) -> Tensor:
    """LIFT-CAM (Jung & Oh 2021): ``alpha_k = sum_ij C(dA_kij -> du)``, DeepLIFT-Rescale with reference 0.

    Summation-to-delta gives ``sum_k alpha_k = v(N) - v(empty)``; for a linear head it is the Shapley value.
    """
    return (game.deeplift_multipliers() * game.activations).sum((2, 3))


@register("shap")
def shap(game: ChannelGame, n_permutations: int = 100, seed: int = 0) -> tuple[Tensor, Tensor]:
    """SHAP-CAM_P (Jung & Oh 2021, Algorithm 1): mean marginal contribution over ``P`` random orderings,
    with its standard error."""
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    orderings = random_orderings(n_permutations, game.num_players, seed, game.activations.device)
    return permutation_estimate(game.marginals(orderings))


@register("exact")
def exact(game: ChannelGame) -> Tensor:
    """Exact Shapley values of the channel game, enumerating all ``2^K`` coalitions."""
    players = game.num_players
    if players > MAX_EXACT_PLAYERS:
        raise ValueError(f"method 'exact' enumerates 2^K coalitions and this layer has K = {players} channels "
                         f"(limit {MAX_EXACT_PLAYERS}); use method='shap' with n_permutations=..., "
                         "or a layer with fewer channels")
    coalitions = all_coalitions(players, game.activations.device)
    return exact_shapley(game.coalition_values(coalitions), coalitions).to(game.activations.dtype)


def _second_order(game: ChannelGame) -> Tensor:
    """``g - H A / 2``: the second-order Taylor expansion of ``v`` around ``A`` (ShapleyCAM's CRG game)."""
    grad, hvp = game.gradient_and_hvp()
    return grad - hvp / 2


@register("shapleycam")
def shapleycam(game: ChannelGame) -> Tensor:
    """ShapleyCAM (Cai 2025): ``alpha_k = mean_ij (g - H A / 2)_kij``."""
    return _second_order(game).mean((2, 3))


@register("shapleycam-h")
def shapleycam_h(game: ChannelGame) -> Tensor:
    """ShapleyCAM-H (Cai 2025): element-wise terms ``(g - H A / 2)_k * A_k``."""
    return _second_order(game) * game.activations


@register("shapleycam-e")
def shapleycam_e(game: ChannelGame) -> Tensor:
    """ShapleyCAM-E (Cai 2025): element-wise terms ``ReLU((g - H A / 2)_k * A_k)``."""
    return (_second_order(game) * game.activations).relu()

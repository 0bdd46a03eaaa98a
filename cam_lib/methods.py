"""Every CAM method of both papers and of grad-cam and TorchCAM, each one short function of the channel game.

A method returns ``alpha`` ``[B, K]`` (its map is ``ReLU(sum_k alpha_k A_k)``) or element-wise terms
``[B, K, h, w]`` (its map is ``ReLU(sum_k terms_k)``); SHAP-CAM also returns the standard error of
``alpha``. Adding a method is one decorated function here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import maps
from .game import ChannelGame
from .numerics import safe_divide
from .shapley import MAX_EXACT_PLAYERS, all_coalitions, exact_shapley, permutation_estimate, random_orderings
from .smoothing import principal_terms
from .utility import CallableUtility

Method = Callable[..., Tensor | tuple[Tensor, Tensor]]
METHODS: dict[str, Method] = {}

# What a method reads to weigh the maps; the book groups methods by it.
GRADIENTS, GAME, ACTIVATIONS = "gradients", "the game", "the activations alone"


@dataclass(frozen=True)
class Card:
    """What the book says of every method next to its formula: what it reads, and what it costs per image
    in passes of the network (``K`` channels, ``P`` orderings, ``N`` noisy copies)."""

    family: str
    cost: str


CARDS: dict[str, Card] = {}


def register(name: str, family: str = "your own", cost: str = "not stated") -> Callable[[Method], Method]:
    """Add a method to ``METHODS`` under ``name`` in lower case (``explain`` looks names up lower-cased),
    with its ``Card`` in ``CARDS``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a method needs a non-empty name, got {name!r}")

    def add(method: Method) -> Method:
        METHODS[name.strip().lower()] = method
        CARDS[name.strip().lower()] = Card(family, cost)
        return method
    return add


@register("cam", GRADIENTS, "1 forward")
def cam(game: ChannelGame) -> Tensor:
    """CAM (Zhou et al. 2016): ``alpha_k = w_{c,k}``, the weights of a head that is GAP + one linear layer."""
    if isinstance(game.utility, CallableUtility):
        raise ValueError(f"method 'cam' reads the weight row w_c of the explained class c, and the callable utility "
                         f"{game.utility.name!r} names no class. Use utility='logit' with target=c, or 'gradcam' or "
                         "'lift', which equal CAM on such heads and take any utility.")
    additive, activations = game.cut.additive, game.activations
    pooled = additive.separable(activations) if additive is not None else None
    if (additive is None or pooled is None or not additive.is_output or not isinstance(additive.affine, nn.Linear)
            or pooled.shape != activations.shape[:2]
            or not torch.allclose(pooled, activations.mean((2, 3)), rtol=1e-4, atol=1e-6)):
        raise ValueError("method 'cam' needs a head made of global average pooling and one linear layer; "
                         "this head is not. Use 'gradcam' (which equals CAM on such heads) or 'lift'.")
    return additive.affine.weight[game.target]


@register("gradcam", GRADIENTS, "1 forward + 1 backward")
def gradcam(game: ChannelGame) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``alpha_k = mean_ij g_kij``."""
    return game.gradient.mean((2, 3))


@register("gradcam++", GRADIENTS, "1 forward + 1 backward")
def gradcam_plus_plus(game: ChannelGame) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018): ``alpha_k = sum_ij a_kij ReLU(g_kij)``,
    ``a = g^2 / (2 g^2 + sum_ab A_kab g^3)`` (0 where the denominator is 0)."""
    grad = game.gradient
    return _plus_plus(grad ** 2, grad ** 3, grad.relu(), game.activations)


def _plus_plus(square: Tensor, cube: Tensor, positive: Tensor, activations: Tensor) -> Tensor:
    """Grad-CAM++'s ``sum_ij a_kij positive_kij`` with ``a = square / (2 square + sum_ab A_kab cube)``."""
    denominator = 2 * square + activations.sum((2, 3), keepdim=True) * cube
    return (safe_divide(square, denominator) * positive).sum((2, 3))


@register("smoothgradcam++", GRADIENTS, "N forwards + N backwards of the whole network (N noisy copies)")
def smooth_gradcam_plus_plus(game: ChannelGame, n_samples: int = 4, sigma: float = 0.3, seed: int = 0) -> Tensor:
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with ``g``, ``g^2``, ``g^3`` averaged over noisy
    images ``x + delta_m``, ``delta_m ~ N(0, sigma^2)``: ``alpha_k = sum_ij a_kij ReLU(mean_m g_m,kij)``,
    ``a = mean g_m^2 / (2 mean g_m^2 + sum_ab A_kab mean g_m^3)``.

    Each noisy image is a game of its own (its own players ``A(x + delta)``); its gradient moments are applied
    to the players of ``x``. ``n_samples`` forward and backward passes of the network; defaults are TorchCAM's.
    """
    _check_samples(n_samples, sigma)
    images = game.images
    generator = torch.Generator(images.device).manual_seed(seed)
    moments = torch.zeros((3, *game.activations.shape), dtype=game.activations.dtype, device=images.device)
    for _ in range(n_samples):
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        grad = game.gradient_of(images + sigma * noise)
        moments += torch.stack([grad, grad ** 2, grad ** 3])
    mean, square, cube = moments / n_samples
    return _plus_plus(square, cube, mean.relu(), game.activations)


@register("xgradcam", GRADIENTS, "1 forward + 1 backward")
def xgradcam(game: ChannelGame) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): ``alpha_k = sum_ij A_kij g_kij / sum_ab A_kab``."""
    activations = game.activations
    return safe_divide((activations * game.gradient).sum((2, 3)), activations.sum((2, 3)))


@register("hirescam", GRADIENTS, "1 forward + 1 backward")
def hirescam(game: ChannelGame) -> Tensor:
    """HiResCAM (Draelos & Carin 2020): element-wise terms ``g_k * A_k``, the first-order Shapley values."""
    return game.gradient * game.activations


@register("layercam", GRADIENTS, "1 forward + 1 backward")
def layercam(game: ChannelGame) -> Tensor:
    """LayerCAM (Jiang et al. 2021): element-wise terms ``ReLU(g_k) * A_k``, each position weighted by its own gradient.

    HiResCAM's first-order terms with the negative gradients set to 0: the terms sum to more than the
    first-order change ``sum g A`` wherever a gradient is negative, so they are not locally accurate even on
    a linear head.
    """
    return game.gradient.relu() * game.activations


@register("gradcam-elementwise", GRADIENTS, "1 forward + 1 backward")
def gradcam_elementwise(game: ChannelGame) -> Tensor:
    """Grad-CAM element-wise (grad-cam package): element-wise terms ``ReLU(g_k * A_k)``.

    HiResCAM's first-order terms with the negative ones dropped; for ``A >= 0`` (after a ReLU) the same as LayerCAM.
    """
    return (game.gradient * game.activations).relu()


@register("eigencam", ACTIVATIONS, "1 forward + an SVD of hw x K")
def eigencam(game: ChannelGame) -> Tensor:
    """EigenCAM (Muhammad & Yeasin 2020): element-wise terms ``v_k (A_k - mean_ij A_k)``, ``v`` the first
    principal component of the positions' activation vectors ``A_:ij``.

    The game is never played: no utility, no head, so the map is the same for every target. Each channel's
    terms sum to 0, so ``alpha = 0`` and the local-accuracy gap is all of ``|v(N) - v(empty)|``.
    """
    return principal_terms(game.activations)


@register("eigengradcam", GRADIENTS, "1 forward + 1 backward + an SVD of hw x K")
def eigengradcam(game: ChannelGame) -> Tensor:
    """EigenGradCAM (grad-cam package): element-wise terms ``v_k (T_k - mean_ij T_k)``, ``v`` the first
    principal component of HiResCAM's terms ``T = g * A``.

    Target-dependent through ``g``, but, as EigenCAM, with ``alpha = 0``: a picture, not an attribution.
    """
    return principal_terms(game.gradient * game.activations)


@register("scorecam", GAME, "K forwards of the whole network")
def scorecam(game: ChannelGame, masks_per_call: int = 32) -> Tensor:
    """Score-CAM (Wang et al. 2020): ``alpha_k = u(f(x * s(up(A_k))))``, each normalised map masking the input.

    Wang et al. use the softmax utility (``utility="softmax"``); ``masks_per_call`` masked images, of one
    or several images, go through the whole network at once (32 measured faster than 256 on a CPU:
    ``benchmarks/metrics_speed.py``).
    """
    return _masked_scores(game, masks_per_call)


def _masked_scores(game: ChannelGame, masks_per_call: int,
                   change: Callable[[Tensor], Tensor] = lambda masks: masks) -> Tensor:
    """``u(f(x * change(s(up(A_k)))))`` for every image and channel ``[B, K]``, ``masks_per_call`` images a call.

    ``change`` sees the masks ``[n, 1, H, W]`` of one call, image by image and channel by channel in order.
    """
    if masks_per_call < 1:
        raise ValueError(f"masks_per_call must be at least 1, got {masks_per_call}")
    images, activations = game.images, game.activations
    batch, players = activations.shape[:2]
    masks = maps.saliency(activations.flatten(0, 1), images.shape[-2:])[:, None]  # [B K, 1, H, W]
    rows = torch.arange(batch, device=images.device).repeat_interleave(players)
    with torch.no_grad():
        alpha = torch.cat([game.network_value(images[index] * change(masks[pairs]), index)
                           for pairs, index in zip(torch.arange(batch * players, device=images.device)
                                                   .split(masks_per_call), rows.split(masks_per_call))])
    return alpha.view(batch, players)


def _check_samples(n_samples: int, sigma: float | None = None) -> None:
    """A sampling method needs at least one sample and a noise level that is a standard deviation."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer of at least 1, got {n_samples!r}")
    if sigma is not None and not sigma >= 0:
        raise ValueError(f"sigma must be a noise standard deviation >= 0, got {sigma!r}")


@register("sscam", GAME, "N K forwards of the whole network")
def sscam(game: ChannelGame, n_samples: int = 35, sigma: float = 2.0, seed: int = 0,
          masks_per_call: int = 32) -> Tensor:
    """SS-CAM (Wang et al. 2020, mask noise): ``alpha_k = mean_m u(f(x * (s(up(A_k)) + delta_m)))``,
    ``delta_m ~ N(0, sigma^2)`` per pixel.

    Score-CAM averaged over ``n_samples`` noisy masks: ``n_samples K`` forward passes of the whole network.
    Defaults are TorchCAM's (35, 2.0). TorchCAM also takes a softmax of ``alpha`` over channels; here
    ``alpha`` is the mean score, in the game's utility, as in ``scorecam``. The noise is drawn from a
    generator seeded with ``seed``, call by call in the order of the masks.
    """
    _check_samples(n_samples, sigma)
    images = game.images
    generator = torch.Generator(images.device).manual_seed(seed)

    def noisy(masks: Tensor) -> Tensor:
        return masks + sigma * torch.randn(masks.shape, generator=generator, device=masks.device, dtype=masks.dtype)
    return torch.stack([_masked_scores(game, masks_per_call, noisy) for _ in range(n_samples)]).mean(0)


@register("iscam", GAME, "N K forwards of the whole network")
def iscam(game: ChannelGame, n_samples: int = 10, masks_per_call: int = 32) -> Tensor:
    """IS-CAM (Naidu et al. 2020): ``alpha_k = (1/N) sum_{i=1}^N u(f(x * (i/N) s(up(A_k))))``.

    Score-CAM's score integrated along the path from the empty mask to the full one, a Riemann sum of ``N``
    steps (``N K`` forward passes); no randomness. TorchCAM instead scales the mask by the running sum
    ``sum_{j<=i} j/N`` (the paper's printed formula), which exceeds 1 after a few steps; the path here stays
    inside ``[0, 1]``, as the integration the paper describes.
    """
    _check_samples(n_samples)

    def scaled(fraction: float) -> Callable[[Tensor], Tensor]:
        return lambda masks: masks * fraction

    return torch.stack([_masked_scores(game, masks_per_call, scaled(step / n_samples))
                        for step in range(1, n_samples + 1)]).mean(0)


@register("ablation", GAME, "K evaluations of the head")
def ablation(game: ChannelGame) -> Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``alpha_k = (v(N) - v(N minus k)) / v(N)``, one ordering's marginal."""
    players = game.num_players
    without = game.coalition_values(1 - torch.eye(players, device=game.activations.device))
    return (game.score[:, None] - without) / game.score[:, None]


@register("lift", GAME, "1 forward + 1 backward")
def lift(game: ChannelGame) -> Tensor:
    """LIFT-CAM (Jung & Oh 2021): ``alpha_k = sum_ij C(dA_kij -> du)``, DeepLIFT-Rescale with reference 0.

    Summation-to-delta gives ``sum_k alpha_k = v(N) - v(empty)``; for a linear head it is the Shapley value.
    """
    return (game.deeplift_multipliers() * game.activations).sum((2, 3))


@register("shap", GAME, "P (K + 1) evaluations of the head")
def shap(game: ChannelGame, n_permutations: int = 100, seed: int = 0) -> tuple[Tensor, Tensor]:
    """SHAP-CAM_P (Jung & Oh 2021, Algorithm 1): mean marginal contribution over ``P`` random orderings,
    with its standard error."""
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    orderings = random_orderings(n_permutations, game.num_players, seed, game.activations.device)
    return permutation_estimate(game.marginals(orderings))


@register("exact", GAME, "2^K evaluations of the head")
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


@register("shapleycam", GRADIENTS, "1 forward + 2 backward")
def shapleycam(game: ChannelGame) -> Tensor:
    """ShapleyCAM (Cai 2025): ``alpha_k = mean_ij (g - H A / 2)_kij``."""
    return _second_order(game).mean((2, 3))


@register("shapleycam-h", GRADIENTS, "1 forward + 2 backward")
def shapleycam_h(game: ChannelGame) -> Tensor:
    """ShapleyCAM-H (Cai 2025): element-wise terms ``(g - H A / 2)_k * A_k``."""
    return _second_order(game) * game.activations


@register("shapleycam-e", GRADIENTS, "1 forward + 2 backward")
def shapleycam_e(game: ChannelGame) -> Tensor:
    """ShapleyCAM-E (Cai 2025): element-wise terms ``ReLU((g - H A / 2)_k * A_k)``."""
    return (_second_order(game) * game.activations).relu()

"""How good is a saliency map? Faithfulness and localisation metrics in one registry, one entry point ``evaluate``.

Masking is done on the normalised input (0 = the dataset's mean colour) and scores are softmax
probabilities of the explained class ``c``: ``Y = p_c(x)``, ``O = p_c(x * s)``, ``D = p_c(x * (1 - s))``.
With a callable utility (``explain(..., utility=u)``) the scores are ``u(f(x'))`` instead, and the metrics
that need class probabilities (ROAD, whose combined score and ARCC assume ``p_c`` in [0, 1]) refuse it.
Per-image values are in the papers' units: percent for IC, AD, ADD, the pointing games, Coherency and
Complexity (the ShapleyCAM paper's x100), [0, 1] for insertion and deletion AUC and ROAD, [-1, 1] for the
correlations. ``summarise`` turns them into means with 95 % bootstrap intervals, and adds the metrics that
are defined on dataset averages (ADCC, ARCC).

Each metric is registered once in ``METRICS`` with the way it is better (higher or lower) and the inputs it
needs; adding a metric is one decorated function here.

>>> exp = cam_lib.explain(model, images, layer, "lift")  # doctest: +SKIP
>>> table = cam_lib.metrics.evaluate(model, images, exp, ["ic", "ad", "add", "road"])  # doctest: +SKIP
>>> cam_lib.metrics.summarise(table)  # doctest: +SKIP
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar, cast

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from .explain import Explainer, Explanation
from .game import ChannelGame
from .imputation import noisy_linear_imputation
from .numerics import safe_divide
from .runtime import model_device
from .state import evaluating
from .utility import CallableUtility, OutputUtility

INSERTION_STARTS = ("zeros", "blur")
ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # Rong et al. 2022


# ---------------------------------------------------------------------------------------------
# Scores of masked images
# ---------------------------------------------------------------------------------------------

def class_probability(model: nn.Module, images: Tensor, target: Tensor, extra_inputs: tuple = (),
                      rows: Tensor | None = None, batch_size: int = 256,
                      utility: CallableUtility | None = None) -> Tensor:
    """``p_c(x) = softmax(f(x))_c`` for each image (``u(f(x))`` with a callable ``utility``), in batches,
    without gradients.

    Row ``i`` of ``images`` is a (masked) copy of image ``rows[i]``: its class and extra inputs come from there.
    """
    rows = torch.arange(len(images), device=images.device) if rows is None else rows

    def score(outputs: Any, index: Tensor) -> Tensor:
        if utility is not None:
            return utility(outputs, index)
        return outputs.softmax(1).gather(1, target[index, None])[:, 0]
    with evaluating(model), torch.no_grad():
        return torch.cat([score(model(chunk, *(extra[index] for extra in extra_inputs)), index)
                          for chunk, index in zip(images.split(batch_size), rows.split(batch_size))])


def top_pixel_masks(saliency: Tensor, fractions: Tensor) -> Tensor:
    """``[B, T, H, W]`` 0/1 masks of the top ``round(delta * H W)`` pixels of each map, one per ``delta``.

    Ties are broken in raster order (a stable sort), so a constant map reveals pixels row by row.
    """
    batch, height, width = saliency.shape
    order = saliency.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(1)
    counts = (fractions.to(saliency) * height * width).round()
    return (rank[:, None, :] < counts[None, :, None]).to(saliency).view(batch, len(fractions), height, width)


def blurred(images: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's insertion start (Petsiuk et al. 2018): each image under an 11 x 11 Gaussian blur of sigma 5."""
    return gaussian_blur(images, [kernel_size, kernel_size], [sigma, sigma])


def insertion_deletion_curves(model: nn.Module, images: Tensor, saliency: Tensor, target: Tensor,
                              extra_inputs: tuple = (), steps: int = 41, start: str = "zeros",
                              batch_size: int = 256, utility: CallableUtility | None = None
                              ) -> tuple[Tensor, Tensor]:
    """Scores ``[B, T]`` as the top ``delta`` of pixels are inserted into a blank (or blurred) image,
    and as they are deleted from ``x``, for ``delta = 0, 1/(T-1), ..., 1`` (LIFT-CAM: T = 41).

    Insertion: ``p_c(x * M + x0 * (1 - M))``, ``x0 = 0`` or ``blur(x)``; deletion: ``p_c(x * (1 - M))``.
    All steps of ``max(1, batch_size // T)`` images go through the model in one pass; a callable ``utility``
    scores ``u`` in place of ``p_c``.
    """
    if start not in INSERTION_STARTS:
        raise ValueError(f"insertion start must be one of {INSERTION_STARTS}, got {start!r}")
    fractions = torch.linspace(0, 1, steps, device=images.device)
    start_images = blurred(images) if start == "blur" else torch.zeros_like(images)
    insertion, deletion = [], []
    for index in torch.arange(len(images), device=images.device).split(max(1, batch_size // steps)):
        masks = top_pixel_masks(saliency[index], fractions)[:, :, None]  # [b, T, 1, H, W]
        x, x0 = images[index, None], start_images[index, None]
        rows = index.repeat_interleave(steps)
        inserted = (x * masks + x0 * (1 - masks)).flatten(0, 1)
        deleted = (x * (1 - masks)).flatten(0, 1)
        scores = class_probability(model, torch.cat([inserted, deleted]), target, extra_inputs,
                                   rows.repeat(2), batch_size, utility).view(2, len(index), steps)
        insertion.append(scores[0])
        deletion.append(scores[1])
    return torch.cat(insertion), torch.cat(deletion)


# ---------------------------------------------------------------------------------------------
# One small function per metric (per-image values)
# ---------------------------------------------------------------------------------------------

def increase_in_confidence(full: Tensor, kept: Tensor) -> Tensor:
    """IC per image: ``100 * 1[Y < O]``; its mean over images is the paper's IC (higher is better)."""
    return 100 * (full < kept).to(full.dtype)


def average_drop(full: Tensor, kept: Tensor) -> Tensor:
    """AD per image: ``100 * max(0, Y - O) / Y`` (lower is better)."""
    return 100 * (full - kept).clamp(min=0) / _positive(full)


def drop_in_deletion(full: Tensor, removed: Tensor, clamp: bool = False) -> Tensor:
    """ADD per image: ``100 * (Y - D) / Y`` (LIFT-CAM); with ``clamp``, ``100 * max(0, Y - D) / Y`` (ShapleyCAM)."""
    drop = full - removed
    return 100 * (drop.clamp(min=0) if clamp else drop) / _positive(full)


def _positive(probability: Tensor) -> Tensor:
    """A probability kept away from 0 (an underflowed ``Y``), so that drops divided by it stay finite."""
    return probability.clamp(min=torch.finfo(probability.dtype).tiny)


def area_under_curve(curve: Tensor) -> Tensor:
    """Trapezoid rule over ``delta`` evenly spaced in [0, 1]: ``[B, T] -> [B]``."""
    return torch.trapezoid(curve, dx=1 / (curve.shape[-1] - 1), dim=-1)


def energy_pointing_game(saliency: Tensor, region: Tensor) -> Tensor:
    """``100 * sum_region s / sum s`` per image; a map with no energy (constant, so all zeros) counts as
    uniform and scores the region's share of the image, ``100 * |region| / (H W)``."""
    region = region.to(saliency)
    inside, total = (saliency * region).sum((-2, -1)), saliency.sum((-2, -1))
    uniform = region.mean((-2, -1))
    return 100 * safe_divide(inside, total, uniform)


def boxes_to_masks(boxes: Sequence[Tensor] | Tensor, size: tuple[int, ...]) -> Tensor:
    """Union of each image's boxes ``(x0, y0, x1, y1)`` (pixels, exclusive ends) as ``[B, H, W]`` 0/1 masks.

    ``boxes``: a list of ``[n_i, 4]`` tensors, or one ``[B, n, 4]`` tensor padded with empty boxes.
    """
    height, width = size
    masks = []
    for image_boxes in boxes:
        image_boxes = torch.as_tensor(image_boxes).reshape(-1, 4)
        columns = torch.arange(width, device=image_boxes.device)
        rows = torch.arange(height, device=image_boxes.device)
        inside_x = (columns >= image_boxes[:, 0, None]) & (columns < image_boxes[:, 2, None])
        inside_y = (rows >= image_boxes[:, 1, None]) & (rows < image_boxes[:, 3, None])
        masks.append((inside_y[:, :, None] & inside_x[:, None, :]).any(0))
    return torch.stack(masks).float()


def complexity(saliency: Tensor) -> Tensor:
    """Complexity per image: ``100 * mean s`` (lower is simpler)."""
    return 100 * saliency.abs().mean((-2, -1))


def pearson(first: Tensor, second: Tensor) -> Tensor:
    """Pearson correlation of two maps per image; 0 where either map is constant (no linear relation to measure)."""
    first, second = first.flatten(1), second.flatten(1)
    first, second = first - first.mean(1, keepdim=True), second - second.mean(1, keepdim=True)
    norms = first.norm(dim=1) * second.norm(dim=1)
    return safe_divide((first * second).sum(1), norms)


def coherency(saliency: Tensor, rerun: Tensor) -> Tensor:
    """Coherency per image: ``100 * (Pearson(s(x), s'(x * s)) + 1) / 2``, with ``s'`` the method rerun on the
    masked image; 50 where either map is constant."""
    return 100 * (pearson(saliency, rerun) + 1) / 2


def adcc(drop: Tensor, coherence: Tensor, simplicity: Tensor) -> Tensor:
    """ADCC (Poppi et al. 2021) in percent from AD, Coherency and Complexity in percent (dataset averages):
    ``3 / (1/Coh + 1/(1 - Com) + 1/(1 - AD))``; 0 when any of the three terms is 0."""
    terms = torch.stack([coherence, 100 - simplicity, 100 - drop]) / 100
    return _harmonic_percent(terms)


def _harmonic_percent(terms: Tensor) -> Tensor:
    """``100 * n / sum_i 1/t_i`` over the first dimension, the harmonic mean in percent; 0 when any ``t_i`` is 0."""
    reciprocals = safe_divide(torch.ones_like(terms), terms).sum(0)
    return safe_divide(torch.full_like(reciprocals, 100.0 * len(terms)), reciprocals, defined=(terms > 0).all(0))


def cosine_similarity(alpha: Tensor, reference: Tensor) -> Tensor:
    """``alpha . ref / (|alpha| |ref|)`` per image; 0 when either vector is zero."""
    norms = alpha.norm(dim=1) * reference.norm(dim=1)
    return safe_divide((alpha * reference).sum(1), norms)


def argmax_pointing_game(saliency: Tensor, region: Tensor, tolerance: int = 0) -> Tensor:
    """The standard pointing game (Zhang et al. 2018): ``100 * 1[argmax s in region]`` per image.

    The region is first grown by ``tolerance`` pixels (Zhang et al. use 15 at 224 x 224). Where several
    pixels share the maximum, the hit is the fraction of them inside the region, the expected hit of a
    random tie-break: a constant map (all zeros) scores the region's share of the image.
    """
    region = region.to(saliency)
    if tolerance > 0:
        region = F.max_pool2d(region[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    peak = saliency == saliency.flatten(1).amax(1)[:, None, None]
    return 100 * (peak * region).sum((-2, -1)) / peak.sum((-2, -1))


def road_curves(model: nn.Module, images: Tensor, saliency: Tensor, target: Tensor, extra_inputs: tuple = (),
                percentages: Sequence[float] = ROAD_PERCENTAGES, noise: float = 0.01, seed: int = 0,
                batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """ROAD (Rong et al. 2022): ``p_c`` after removing the most (MoRF) and the least (LeRF) relevant
    ``p`` percent of pixels, each removed pixel filled by noisy linear imputation: two ``[B, T]`` curves.

    Imputing from the neighbours, instead of painting the mean colour, keeps the removal pattern's shape
    from telling the model which pixels were removed.
    """
    fractions = torch.tensor([p / 100 for p in percentages], device=images.device)
    generator = torch.Generator(images.device).manual_seed(seed)
    steps = len(fractions)
    morf, lerf = [], []
    for index in torch.arange(len(images), device=images.device).split(max(1, batch_size // (2 * steps))):
        most = top_pixel_masks(saliency[index], fractions)             # the top p: removed by MoRF
        kept_by_lerf = top_pixel_masks(saliency[index], 1 - fractions)  # the top 1 - p: kept by LeRF
        keep = torch.cat([1 - most, kept_by_lerf], 1).flatten(0, 1)    # [b * 2T, H, W]
        repeated = images[index].repeat_interleave(2 * steps, 0)
        imputed = noisy_linear_imputation(repeated, keep, noise, generator)
        scores = class_probability(model, imputed, target, extra_inputs, index.repeat_interleave(2 * steps),
                                   batch_size).view(len(index), 2, steps)
        morf.append(scores[:, 0])
        lerf.append(scores[:, 1])
    return torch.cat(morf), torch.cat(lerf)


def random_subsets(count: int, size: int, fraction: float, seed: int, device: torch.device) -> Tensor:
    """``[count, size]`` 0/1 rows, each with ``round(fraction * size)`` ones at random places (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.rand(count, size, generator=generator).argsort(1) < max(1, round(fraction * size))
    return chosen.float().to(device)


def patch_subset_drops(model: nn.Module, images: Tensor, target: Tensor, extra_inputs: tuple = (),
                       n_subsets: int = 64, fraction: float = 0.25, patch: int = 4, seed: int = 0,
                       batch_size: int = 256, full: Tensor | None = None,
                       utility: CallableUtility | None = None) -> tuple[Tensor, Tensor]:
    """The model side of faithfulness correlation: ``n_subsets`` random sets ``T`` of ``patch x patch``
    patches as ``[n, H, W]`` 0/1 masks, and the drops ``Y - p_c(x * (1 - 1_T))`` ``[B, n]``. They do not
    depend on the map, so every method scored on the same images can share them (``full``: ``Y`` if known)."""
    height, width = images.shape[-2:]
    grid = (height // patch, width // patch)
    if min(grid) < 1:
        raise ValueError(f"patch {patch} is larger than the images ({height} x {width}); use a smaller patch")
    cells = random_subsets(n_subsets, grid[0] * grid[1], fraction, seed, images.device).view(n_subsets, 1, *grid)
    removed = F.interpolate(cells, size=(height, width), mode="nearest")[:, 0]  # [n, H, W]
    rows = torch.arange(len(images), device=images.device)
    if full is None:
        full = class_probability(model, images, target, extra_inputs, rows, batch_size, utility)
    dropped = torch.cat([class_probability(model, (images[index, None] * (1 - removed[None, :, None])).flatten(0, 1),
                                           target, extra_inputs, index.repeat_interleave(n_subsets), batch_size,
                                           utility)
                         .view(len(index), n_subsets)
                         for index in rows.split(max(1, batch_size // n_subsets))])
    return removed, full[:, None] - dropped


def faithfulness_correlation(model: nn.Module, images: Tensor, saliency: Tensor, target: Tensor,
                             extra_inputs: tuple = (), n_subsets: int = 64, fraction: float = 0.25,
                             patch: int = 4, seed: int = 0, batch_size: int = 256,
                             drops: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Faithfulness correlation (Bhatt et al. 2020; Sensitivity-N of Ancona et al. 2018 with
    ``N = fraction`` of the patches): per image, the Pearson correlation over ``n_subsets`` random sets
    ``T`` of ``patch x patch`` patches between ``sum_{i in T} S_i`` and ``Y - p_c(x * (1 - 1_T))``.

    A map whose values add up like the model's output drops scores 1; the same subsets serve every image.
    ``drops``: ``patch_subset_drops`` of these images and targets, already computed for another map.
    """
    removed, drop = drops or patch_subset_drops(model, images, target, extra_inputs, n_subsets, fraction, patch,
                                                seed, batch_size)
    return pearson(torch.einsum("bhw,nhw->bn", saliency, removed), drop)


def channel_correlation(game: ChannelGame, alpha: Tensor, n_subsets: int = 64, fraction: float = 0.25,
                        seed: int = 0) -> Tensor:
    """Faithfulness correlation on the game's own players: per image, the Pearson correlation over
    ``n_subsets`` random coalitions ``T`` (``fraction`` of the K channels) between ``sum_{k in T} alpha_k`` and
    ``v(N) - v(N minus T)``. Shapley values of an additive game, and LIFT-CAM on a linear head, score 1."""
    removed = random_subsets(n_subsets, game.num_players, fraction, seed, alpha.device)
    drops = game.score[:, None] - game.coalition_values(1 - removed)
    return pearson(alpha @ removed.T, drops)


def arcc(coherence: Tensor, simplicity: Tensor, road_combined: Tensor) -> Tensor:
    """ARCC in percent from Coherency and Complexity in percent and ROAD combined (dataset averages):
    ``3 / (1/Coh + 1/(1 - Com) + 1/R)`` with ``R = clip(2 ROAD, 0, 1)``, ADCC with ROAD in place of AD;
    0 when any of the three terms is 0."""
    terms = torch.stack([coherence / 100, 1 - simplicity / 100, (2 * road_combined).clamp(0, 1)])
    return _harmonic_percent(terms)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

Shared = TypeVar("Shared")  # a map-free pass kept in ``Scoring.shared``


@dataclass
class Scoring:
    """Everything a metric may read for one batch, with the model passes that several metrics share
    computed once (``probabilities``, ``curves``, ``road``)."""

    model: nn.Module
    images: Tensor
    saliency: Tensor
    target: Tensor
    extra_inputs: tuple = ()
    explanation: Explanation | None = None
    rerun: Callable[[Tensor], Tensor] | None = None
    explainer: Explainer | None = None
    boxes: Sequence[Tensor] | Tensor | None = None
    masks: Tensor | None = None
    reference_alpha: Tensor | None = None
    steps: int = 41
    insertion_start: str = "zeros"
    road_percentages: Sequence[float] = ROAD_PERCENTAGES
    road_noise: float = 0.01
    n_subsets: int = 64
    subset_fraction: float = 0.25
    patch: int = 4
    pointing_tolerance: int = 0
    seed: int = 0
    batch_size: int = 256
    shared: dict | None = None
    utility: CallableUtility | None = None  # scores u(f(x')) instead of p_c

    def map_free(self, key: tuple, compute: Callable[[], Shared]) -> Shared:
        """A pass that does not depend on the map, read from ``shared`` when another method already made it
        for these images and targets (``evaluate`` checks they are the same), computed and stored otherwise."""
        if self.shared is None:
            return compute()
        if key not in self.shared:
            self.shared[key] = compute()
        return cast(Shared, self.shared[key])

    @cached_property
    def rows(self) -> Tensor:
        return torch.arange(len(self.images), device=self.images.device)

    @cached_property
    def full(self) -> Tensor:
        """``Y = p_c(x)`` ``[B]``, the same for every map of these images."""
        return self.map_free(("Y",), lambda: class_probability(self.model, self.images, self.target,
                                                                self.extra_inputs, self.rows, self.batch_size,
                                                                self.utility))

    @cached_property
    def probabilities(self) -> Tensor:
        """``[3, B]``: ``Y = p_c(x)``, ``O = p_c(x * s)``, ``D = p_c(x * (1 - s))``."""
        full = self.full
        masked = torch.cat([self.images * self.saliency[:, None], self.images * (1 - self.saliency[:, None])])
        kept_removed = class_probability(self.model, masked, self.target, self.extra_inputs, self.rows.repeat(2),
                                         self.batch_size, self.utility).view(2, -1)
        return torch.cat([full[None], kept_removed])

    @cached_property
    def curves(self) -> tuple[Tensor, Tensor]:
        return insertion_deletion_curves(self.model, self.images, self.saliency, self.target, self.extra_inputs,
                                         self.steps, self.insertion_start, self.batch_size, self.utility)

    @cached_property
    def road(self) -> tuple[Tensor, Tensor]:
        return road_curves(self.model, self.images, self.saliency, self.target, self.extra_inputs,
                           self.road_percentages, self.road_noise, self.seed, self.batch_size)

    @cached_property
    def region_boxes(self) -> Tensor:
        assert self.boxes is not None  # a metric that needs boxes is refused without them (_check_metrics)
        return boxes_to_masks(self.boxes, self.saliency.shape[-2:]).to(self.saliency)

    @cached_property
    def region_masks(self) -> Tensor:
        assert self.masks is not None  # as for boxes
        return _check_masks(self.masks, self.saliency)

    @property
    def described(self) -> Explanation:
        """The Explanation being scored, for the metrics registered as needing one."""
        assert self.explanation is not None  # refused without one (_check_metrics)
        return self.explanation

    @property
    def positive_full(self) -> Tensor:
        """``Y``, checked positive: AD and ADD are drops relative to it."""
        if self.utility is not None and (self.full <= 0).any():
            bad = (self.full <= 0).nonzero()[:, 0].tolist()
            raise ValueError(f"AD and ADD are drops relative to Y = u(f(x)), which must be positive; the utility "
                             f"{self.utility.name!r} gives Y <= 0 on images {bad}. Use insertion/deletion or IC "
                             "instead")
        return self.full

    def explainer_for(self) -> Explainer:
        """The explainer that explains again (coherency's rerun, channel correlation's game): the caller's, else
        one that cuts the layer as the Explanation was cut, with its layout (a ViT's tokens) and torch.fx or hooks."""
        made = self.described
        self.explainer = self.explainer or Explainer(self.model, made.layer, made.traced, made.layout)
        return self.explainer


@dataclass(frozen=True)
class Metric:
    """A registered metric: its direction, units, the inputs it needs, and how it is computed.

    ``compute`` gives per-image values from a ``Scoring``; a dataset-level metric instead has ``combine``,
    applied in ``summarise`` to the means of the metrics it ``combines``.
    """

    name: str
    higher_is_better: bool
    unit: str
    needs: frozenset[str]
    compute: Callable[[Scoring], Tensor] | None = None
    combines: tuple[str, ...] = ()
    combine: Callable[..., Tensor] | None = None
    description: str = ""


METRICS: dict[str, Metric] = {}


def register_metric(name: str, higher_is_better: bool, unit: str, needs: Sequence[str] = ()) -> Callable:
    """Add a per-image metric ``compute(scoring) -> [B]`` to ``METRICS``; its docstring describes it."""
    def add(compute: Callable[[Scoring], Tensor]) -> Callable[[Scoring], Tensor]:
        METRICS[name] = Metric(name, higher_is_better, unit, frozenset(needs), compute,
                               description=(compute.__doc__ or "").strip())
        return compute
    return add


def register_combination(name: str, higher_is_better: bool, unit: str, combines: Sequence[str],
                         combine: Callable[..., Tensor]) -> None:
    """Add a dataset-level metric, ``combine(*means of combines)``, computed by ``summarise``."""
    METRICS[name] = Metric(name, higher_is_better, unit, frozenset(), combines=tuple(combines), combine=combine,
                           description=(combine.__doc__ or "").strip().splitlines()[0])


@register_metric("ic", True, "%")
def _ic(s: Scoring) -> Tensor:
    """Increase in Confidence (Chattopadhay et al. 2018): share of images where keeping ``x * s`` raises p_c."""
    return increase_in_confidence(s.probabilities[0], s.probabilities[1])


@register_metric("ad", False, "%")
def _ad(s: Scoring) -> Tensor:
    """Average Drop: ``max(0, Y - O) / Y`` when only ``x * s`` is kept."""
    return average_drop(s.positive_full, s.probabilities[1])


@register_metric("add", True, "%")
def _add(s: Scoring) -> Tensor:
    """Average Drop in Deletion (LIFT-CAM): ``(Y - D) / Y`` when ``x * s`` is removed."""
    return drop_in_deletion(s.positive_full, s.probabilities[2])


@register_metric("add_clamped", True, "%")
def _add_clamped(s: Scoring) -> Tensor:
    """ADD clamped at 0, as the ShapleyCAM code computes it."""
    return drop_in_deletion(s.positive_full, s.probabilities[2], clamp=True)


@register_metric("insertion", True, "AUC")
def _insertion(s: Scoring) -> Tensor:
    """Insertion AUC: p_c as the most salient pixels are inserted into a blank (or blurred) image."""
    return area_under_curve(s.curves[0])


@register_metric("deletion", False, "AUC")
def _deletion(s: Scoring) -> Tensor:
    """Deletion AUC: p_c as the most salient pixels are painted with the mean colour."""
    return area_under_curve(s.curves[1])


@register_metric("road_morf", False, "p_c", needs=("probabilities",))
def _road_morf(s: Scoring) -> Tensor:
    """ROAD, most relevant first: mean p_c after removing the top p % (imputed), over the percentages."""
    return s.road[0].mean(1)


@register_metric("road_lerf", True, "p_c", needs=("probabilities",))
def _road_lerf(s: Scoring) -> Tensor:
    """ROAD, least relevant first: mean p_c after removing the bottom p % (imputed), over the percentages."""
    return s.road[1].mean(1)


@register_metric("road", True, "p_c", needs=("probabilities",))
def _road(s: Scoring) -> Tensor:
    """ROAD combined: ``mean_p (LeRF_p - MoRF_p) / 2``, in [-0.5, 0.5]."""
    return (s.road[1] - s.road[0]).mean(1) / 2


@register_metric("pointing_box", True, "%", needs=("boxes",))
def _pointing_box(s: Scoring) -> Tensor:
    """Energy-based pointing game on the boxes: share of the map's energy inside them."""
    return energy_pointing_game(s.saliency, s.region_boxes)


@register_metric("pointing_mask", True, "%", needs=("masks",))
def _pointing_mask(s: Scoring) -> Tensor:
    """Energy-based pointing game on the pixel masks."""
    return energy_pointing_game(s.saliency, s.region_masks)


@register_metric("pointing_game_box", True, "%", needs=("boxes",))
def _pointing_game_box(s: Scoring) -> Tensor:
    """Standard pointing game on the boxes: does the map's maximum fall inside them?"""
    return argmax_pointing_game(s.saliency, s.region_boxes, s.pointing_tolerance)


@register_metric("pointing_game_mask", True, "%", needs=("masks",))
def _pointing_game_mask(s: Scoring) -> Tensor:
    """Standard pointing game on the pixel masks."""
    return argmax_pointing_game(s.saliency, s.region_masks, s.pointing_tolerance)


@register_metric("complexity", False, "%")
def _complexity(s: Scoring) -> Tensor:
    """Complexity (Poppi et al. 2021): ``mean s``; lower is simpler."""
    return complexity(s.saliency)


@register_metric("coherency", True, "%", needs=("rerun",))
def _coherency(s: Scoring) -> Tensor:
    """Coherency (Poppi et al. 2021): the map should survive rerunning the method on ``x * s``."""
    masked = s.images * s.saliency[:, None]
    assert s.rerun is not None  # evaluate sets it, or refuses coherency without it (_check_metrics)
    return coherency(s.saliency, s.rerun(masked))


@register_metric("faithfulness_correlation", True, "r")
def _faithfulness_correlation(s: Scoring) -> Tensor:
    """Faithfulness correlation / Sensitivity-N on random sets of pixel patches."""
    options = (s.n_subsets, s.subset_fraction, s.patch, s.seed)
    drops = s.map_free(("patch_subset_drops", *options), lambda: patch_subset_drops(
        s.model, s.images, s.target, s.extra_inputs, *options, s.batch_size, s.full, s.utility))
    return faithfulness_correlation(s.model, s.images, s.saliency, s.target, drops=drops)


@register_metric("channel_correlation", True, "r", needs=("explanation",))
def _channel_correlation(s: Scoring) -> Tensor:
    """Faithfulness correlation on random coalitions of channels, the game's own players."""
    explanation = s.described
    game = s.explainer_for().game(s.images, *explanation.replay(), extra_inputs=s.extra_inputs)
    with evaluating(s.model):
        return channel_correlation(game, explanation.alpha, s.n_subsets, s.subset_fraction, s.seed)


@register_metric("local_accuracy_gap", False, "|u|", needs=("explanation",))
def _local_accuracy_gap(s: Scoring) -> Tensor:
    """``|sum_k alpha_k - (v(N) - v(empty))|``: 0 for Shapley values and LIFT-CAM."""
    return s.described.local_accuracy_gap


@register_metric("cosine", True, "cos", needs=("explanation", "reference_alpha"))
def _cosine(s: Scoring) -> Tensor:
    """Cosine similarity of alpha to reference coefficients (SHAP-CAM_10000 in the papers)."""
    assert s.reference_alpha is not None  # refused without it (_check_metrics)
    return cosine_similarity(s.described.alpha, _check_reference(s.reference_alpha, s.described.alpha))


register_combination("adcc", True, "%", ("ad", "coherency", "complexity"), adcc)
register_combination("arcc", True, "%", ("coherency", "complexity", "road"), arcc)


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

def evaluate(model: nn.Module, images: Tensor, explanation: Explanation | Tensor,
             metrics: Sequence[str] = ("ic", "ad", "add"), *, target: Tensor | None = None,
             extra_inputs: tuple = (), boxes: Sequence[Tensor] | Tensor | None = None,
             masks: Tensor | None = None, reference_alpha: Tensor | None = None,
             explainer: Explainer | None = None, method_options: dict | None = None,
             rerun: Callable[[Tensor], Tensor] | None = None, steps: int = 41, insertion_start: str = "zeros",
             road_percentages: Sequence[float] = ROAD_PERCENTAGES, road_noise: float = 0.01, n_subsets: int = 64,
             subset_fraction: float = 0.25, patch: int = 4, pointing_tolerance: int = 0, seed: int = 0,
             batch_size: int = 256, timings: dict[str, float] | None = None,
             shared: dict | None = None, utility: OutputUtility | None = None) -> pd.DataFrame:
    """Per-image values of ``metrics`` (names in ``METRICS``) for the saliency maps of ``explanation``:
    a tidy DataFrame with columns ``image``, ``metric``, ``value``.

    ``explanation``: an ``Explanation`` or saliency maps ``[B, H, W]`` in [0, 1] (then ``target`` is the
    explained class, default the predicted one). Inputs some metrics need: ``boxes`` / ``masks`` (pointing
    games), ``reference_alpha`` ``[B, K]`` (``cosine``), an ``Explanation`` (``local_accuracy_gap``,
    ``cosine``, ``channel_correlation``), and for ``coherency`` either an ``Explanation`` (the method is
    rerun on ``x * s``: pass ``explainer`` to reuse one and ``method_options`` such as ``n_permutations``)
    or ``rerun``, a function from masked images to their saliency maps. Settings: ``steps`` and
    ``insertion_start`` ("zeros" as LIFT-CAM, "blur" as RISE) for insertion/deletion; ``road_percentages``
    and ``road_noise`` for ROAD; ``n_subsets``, ``subset_fraction`` and ``patch`` (pixels) for the
    correlations; ``pointing_tolerance`` (pixels) for the standard pointing game; ``seed`` for every random
    choice. ``extra_inputs`` (a VQA question) are repeated for every masked copy. ``timings``, if given, gets
    the seconds each metric took added to it (a pass several metrics share is charged to the first).
    ``shared``: a dict kept across calls that score other maps of the *same* images and targets (the runner's
    methods); the passes that do not depend on the map (``Y``, faithfulness correlation's drops) are made once.
    ``utility``: a callable ``outputs -> [B]`` that scores masked images in place of ``p_c`` (the Explanation's
    own callable by default); then no ``target``, and the ROAD metrics, which need class probabilities, refuse.
    """
    described = explanation if isinstance(explanation, Explanation) else None
    own = described.utility_function if described is not None else None
    chosen = utility or own
    scorer = None if chosen is None else CallableUtility(chosen)
    if scorer is not None and target is not None:
        raise ValueError("target= names a class, but the callable utility picks its own output: drop target=")
    metrics = _check_metrics(metrics, explanation, boxes, masks, reference_alpha, rerun, scorer)
    images, extra_inputs, saliency, target = _check_inputs(model, images, explanation, target, extra_inputs, scorer)
    if insertion_start not in INSERTION_STARTS:
        raise ValueError(f"insertion start must be one of {INSERTION_STARTS}, got {insertion_start!r}")
    _check_shared(shared, images, target, extra_inputs)
    _check_explainer(explainer, described)
    scoring = Scoring(model, images, saliency, target, extra_inputs, described,
                      rerun, explainer, boxes, masks, reference_alpha, steps, insertion_start, road_percentages,
                      road_noise, n_subsets, subset_fraction, patch, pointing_tolerance, seed, batch_size, shared,
                      scorer)
    if scoring.rerun is None and described is not None:
        scoring.rerun = lambda masked: scoring.explainer_for()(
            masked, described.method, *described.replay(target),
            extra_inputs=extra_inputs, **(method_options or {})).saliency
    values = {}
    for name in metrics:
        began = time.perf_counter()
        compute = METRICS[name].compute
        assert compute is not None  # _check_metrics refuses dataset-level combinations here
        values[name] = compute(scoring)
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - began
    return _tidy(values)


def _tidy(values: dict[str, Tensor]) -> pd.DataFrame:
    """``{metric: [B]}`` to rows ``(image, metric, value)``, images in order within each metric."""
    frames = [pd.DataFrame({"image": range(len(v)), "metric": name, "value": v.detach().double().cpu().numpy()})
              for name, v in values.items()]
    return pd.concat(frames, ignore_index=True)


def applicable(metric_names: Sequence[str], has_explanation: bool) -> list[str]:
    """The metrics of ``metric_names`` that bare saliency maps (or, with ``has_explanation``, an Explanation)
    can be scored on, given a ``rerun`` for Coherency: a control map has no coefficients alpha."""
    return [m for m in metric_names if has_explanation or "explanation" not in METRICS[m].needs]


def _check_metrics(metrics: Sequence[str], explanation: Explanation | Tensor, boxes, masks,
                   reference_alpha, rerun, utility: CallableUtility | None = None) -> list[str]:
    """Known per-image metric names, each with the inputs it needs."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    combined = [m for m in metrics if METRICS[m].compute is None]
    if combined:
        raise ValueError(f"metrics {combined} are defined on dataset averages: evaluate the metrics they combine "
                         f"({', '.join(sorted({c for m in combined for c in METRICS[m].combines}))}), "
                         "then summarise() adds them")
    probabilities = sorted(m for m in metrics if "probabilities" in METRICS[m].needs)
    if utility is not None and probabilities:
        raise ValueError(f"metrics {probabilities} need class probabilities p_c, and the callable utility "
                         f"{utility.name!r} gives none; with it use insertion, deletion, ic, ad, add, "
                         "faithfulness_correlation or the pointing games")
    is_explanation = isinstance(explanation, Explanation)
    needing = sorted(m for m in metrics if "explanation" in METRICS[m].needs
                     or ("rerun" in METRICS[m].needs and rerun is None))
    if not is_explanation and needing:
        raise ValueError(f"metrics {needing} need an Explanation, not bare saliency maps "
                         "(Coherency also accepts rerun=, a function from masked images to maps)")
    given = {"boxes": boxes, "masks": masks, "reference_alpha": reference_alpha}
    for metric in metrics:
        for need in sorted(METRICS[metric].needs & set(given)):
            if given[need] is None:
                raise ValueError(f"metric {metric!r} needs {need}=...")
    return metrics


def _check_inputs(model: nn.Module, images: Tensor, explanation: Explanation | Tensor,
                  target: Tensor | None, extra_inputs: tuple,
                  utility: CallableUtility | None = None) -> tuple[Tensor, tuple, Tensor, Tensor]:
    """Images, extra inputs, saliency and target on the model's device, with matching shapes."""
    device = model_device(model, images.device)
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a tensor [B, C, H, W]; got {getattr(images, 'shape', type(images))}")
    saliency = explanation.saliency if isinstance(explanation, Explanation) else explanation
    if not isinstance(saliency, Tensor) or saliency.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"saliency must have shape [B, H, W] = {(images.shape[0], *images.shape[-2:])} "
                         f"to match the images; got {tuple(getattr(saliency, 'shape', ()))}")
    if not torch.isfinite(saliency).all():
        raise ValueError("saliency contains NaN or inf")
    images, saliency = images.detach().to(device), saliency.detach().to(device, images.dtype)
    extra_inputs = tuple(extra.to(device) for extra in extra_inputs)
    if any(len(extra) != len(images) for extra in extra_inputs):
        raise ValueError(f"each extra input must have the images' batch size {len(images)}")
    if isinstance(explanation, Explanation):
        target = explanation.target
    elif utility is not None:  # no class: the utility picks its own output
        target = torch.full((len(images),), -1, dtype=torch.long, device=device)
    elif target is None:
        with evaluating(model), torch.no_grad():
            target = model(images, *extra_inputs).argmax(1)
    target = torch.as_tensor(target, device=device).long().reshape(-1).expand(len(images))
    return images, extra_inputs, saliency, target


def _check_explainer(explainer: Explainer | None, described: Explanation | None) -> None:
    """An ``explainer=`` that explains again (coherency, channel correlation) must cut the layer, and read it with
    the layout, that the Explanation was made with: another would score a different game. (Its model may be a copy
    of the evaluated one, as the runner's faster inference copy is.)"""
    if explainer is None or described is None:
        return
    if explainer.layer != described.layer:
        raise ValueError(f"explainer= cuts layer {explainer.layer!r}, but the explanation was made at "
                         f"{described.layer!r}: pass an Explainer of that layer, or leave explainer= out")
    if explainer.layout != described.layout:
        raise ValueError("explainer= reads the layer with another reshape= than the explanation was made with: "
                         "make it with the same reshape=, or leave explainer= out")


def _check_shared(shared: dict | None, images: Tensor, target: Tensor, extra_inputs: tuple) -> None:
    """``shared`` must hold passes of these very images, targets and extra inputs (it remembers the first)."""
    if shared is None:
        return
    inputs = shared.setdefault("inputs", (images, target, extra_inputs))
    same = (inputs[0].shape == images.shape and torch.equal(inputs[0], images) and torch.equal(inputs[1], target)
            and len(inputs[2]) == len(extra_inputs) and all(torch.equal(a, b) for a, b in zip(inputs[2], extra_inputs)))
    if not same:
        raise ValueError("shared= holds passes made for other images, targets or extra inputs; "
                         "use one dict per batch of images (and per target)")


def _check_masks(masks: Tensor, saliency: Tensor) -> Tensor:
    """Ground-truth masks ``[B, H, W]`` like the saliency maps."""
    if not isinstance(masks, Tensor) or masks.shape != saliency.shape:
        raise ValueError(f"masks must have the saliency's shape {tuple(saliency.shape)}; "
                         f"got {tuple(getattr(masks, 'shape', ()))}")
    return masks.to(saliency)


def _check_reference(reference: Tensor, alpha: Tensor) -> Tensor:
    """Reference coefficients ``[B, K]`` like ``alpha``."""
    if not isinstance(reference, Tensor) or reference.shape != alpha.shape:
        raise ValueError(f"reference_alpha must have alpha's shape {tuple(alpha.shape)}; "
                         f"got {tuple(getattr(reference, 'shape', ()))}")
    return reference.to(alpha)


# ---------------------------------------------------------------------------------------------
# Aggregates with bootstrap intervals
# ---------------------------------------------------------------------------------------------

def bootstrap_means(values: Tensor, n_resamples: int = 1000, seed: int = 0) -> Tensor:
    """Means of ``[N, M]`` values over ``n_resamples`` resamples of the N rows with replacement: ``[R, M]``."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(values), (n_resamples, len(values)), generator=generator)
    return values[index].mean(1)


def summarise(table: pd.DataFrame, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean and percentile bootstrap interval of each metric, per group of the other columns.

    Groups are all columns but ``image``, ``metric`` and ``value``. Where a group has every metric that a
    dataset-level metric combines (ADCC: AD, Coherency, Complexity; ARCC: Coherency, Complexity, ROAD) on
    the same images, that metric is added: the combination of the means, its interval from the same resamples.
    """
    groups = [c for c in table.columns if c not in ("image", "metric", "value")]
    rows = []
    for key, group in (table.groupby(groups, sort=False, dropna=False) if groups else [((), table)]):
        wide = group.pivot_table(index="image", columns="metric", values="value", sort=False)
        names = list(wide.columns)
        means = torch.tensor(wide.mean().to_numpy())[None]
        resampled = _resample_columns(wide, n_resamples, seed)
        counts = wide.notna().sum().to_dict()
        for metric in METRICS.values():
            if metric.combine is None or not set(metric.combines) <= set(names):
                continue
            pick = [names.index(m) for m in metric.combines]
            means = torch.cat([means, metric.combine(*means[:, pick].T)[:, None]], 1)
            resampled = torch.cat([resampled, metric.combine(*resampled[:, pick].T)[:, None]], 1)
            names.append(metric.name)
            counts[metric.name] = min(counts[m] for m in metric.combines)
        low, high = _percentiles(resampled, level)
        key = key if isinstance(key, tuple) else (key,)
        rows += [dict(zip(groups, key), metric=name, mean=float(means[0, i]), low=float(low[i]),
                      high=float(high[i]), n=int(counts[name])) for i, name in enumerate(names)]
    return pd.DataFrame(rows)


def interval_text(summary: pd.DataFrame, digits: int = 1) -> list[str]:
    """``"mean [low, high]"`` for each row of ``summarise``'s output, to ``digits`` decimals: a table cell."""
    return [f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
            for m, lo, hi in zip(summary["mean"], summary["low"], summary["high"])]


def _resample_columns(wide: pd.DataFrame, n_resamples: int, seed: int) -> Tensor:
    """Bootstrap means ``[R, M]`` of each column over its non-missing rows (all columns share the resampled rows
    when they cover the same images, which keeps ADCC's three means paired)."""
    data = torch.tensor(wide.to_numpy())
    if not torch.isnan(data).any():
        return bootstrap_means(data, n_resamples, seed)
    return torch.stack([bootstrap_means(column[~torch.isnan(column)][:, None], n_resamples, seed)[:, 0]
                        for column in data.T], 1)


def _percentiles(resampled: Tensor, level: float) -> tuple[Tensor, Tensor]:
    """The ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of each column."""
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=resampled.dtype)
    low, high = torch.quantile(resampled, quantiles, dim=0)
    return low, high


__all__ = ["METRICS", "Metric", "Scoring", "register_metric", "register_combination", "evaluate", "applicable",
           "summarise", "interval_text", "class_probability", "top_pixel_masks", "blurred", "insertion_deletion_curves",
           "increase_in_confidence", "average_drop", "drop_in_deletion", "area_under_curve",
           "energy_pointing_game", "argmax_pointing_game", "road_curves", "random_subsets",
           "faithfulness_correlation", "patch_subset_drops", "channel_correlation", "boxes_to_masks", "complexity",
           "pearson",
           "coherency", "adcc", "arcc", "cosine_similarity", "bootstrap_means", "ROAD_PERCENTAGES"]

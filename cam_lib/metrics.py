"""How good is a saliency map? Faithfulness and localisation metrics, with one entry point, ``evaluate``.

Masking is done on the normalised input (0 = the dataset's mean colour) and scores are softmax
probabilities of the explained class ``c``: ``Y = p_c(x)``, ``O = p_c(x * S)``, ``D = p_c(x * (1 - S))``.
Per-image values are in the papers' units: percent for IC, AD, ADD, the pointing game, Coherency and
Complexity (the ShapleyCAM paper's x100), [0, 1] for insertion and deletion AUC. ``summarise`` turns them
into means with 95 % bootstrap intervals, and adds ADCC, which is defined on dataset averages.

>>> exp = cam_lib.explain(model, images, layer, "lift")  # doctest: +SKIP
>>> table = cam_lib.metrics.evaluate(model, images, exp, ["ic", "ad", "add", "insertion"])  # doctest: +SKIP
>>> cam_lib.metrics.summarise(table)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from .explain import Explainer, Explanation
from .state import evaluating

METRICS = ("ic", "ad", "add", "add_clamped", "insertion", "deletion", "pointing_box", "pointing_mask",
           "coherency", "complexity", "local_accuracy_gap", "cosine")
NEEDS_EXPLANATION = {"coherency", "local_accuracy_gap", "cosine"}
INSERTION_STARTS = ("zeros", "blur")


# ---------------------------------------------------------------------------------------------
# Scores of masked images
# ---------------------------------------------------------------------------------------------

def class_probability(model: nn.Module, images: Tensor, target: Tensor, extra_inputs: tuple = (),
                      rows: Optional[Tensor] = None, batch_size: int = 256) -> Tensor:
    """``p_c(x) = softmax(f(x))_c`` for each image, in batches, without gradients.

    Row ``i`` of ``images`` is a (masked) copy of image ``rows[i]``: its class and extra inputs come from there.
    """
    rows = torch.arange(len(images), device=images.device) if rows is None else rows
    with evaluating(model), torch.no_grad():
        return torch.cat([model(chunk, *(extra[index] for extra in extra_inputs)).softmax(1)
                          .gather(1, target[index, None])[:, 0]
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
                              batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Scores ``[B, T]`` as the top ``delta`` of pixels are inserted into a blank (or blurred) image,
    and as they are deleted from ``x``, for ``delta = 0, 1/(T-1), ..., 1`` (LIFT-CAM: T = 41).

    Insertion: ``p_c(x * M + x0 * (1 - M))``, ``x0 = 0`` or ``blur(x)``; deletion: ``p_c(x * (1 - M))``.
    All steps of ``max(1, batch_size // T)`` images go through the model in one pass.
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
                                   rows.repeat(2), batch_size).view(2, len(index), steps)
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
    """``100 * sum_region S / sum S`` per image; a map with no energy (constant, so all zeros) counts as
    uniform and scores the region's share of the image, ``100 * |region| / (H W)``."""
    region = region.to(saliency)
    inside, total = (saliency * region).sum((-2, -1)), saliency.sum((-2, -1))
    uniform = region.mean((-2, -1))
    return 100 * torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), uniform)


def boxes_to_masks(boxes: Sequence[Tensor] | Tensor, size: tuple[int, int]) -> Tensor:
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
    """Complexity per image: ``100 * mean |S|`` (lower is simpler)."""
    return 100 * saliency.abs().mean((-2, -1))


def pearson(first: Tensor, second: Tensor) -> Tensor:
    """Pearson correlation of two maps per image; 0 where either map is constant (no linear relation to measure)."""
    first, second = first.flatten(1), second.flatten(1)
    first, second = first - first.mean(1, keepdim=True), second - second.mean(1, keepdim=True)
    norms = first.norm(dim=1) * second.norm(dim=1)
    return torch.where(norms > 0, (first * second).sum(1) / torch.where(norms > 0, norms, 1.0), 0.0)


def coherency(saliency: Tensor, rerun: Tensor) -> Tensor:
    """Coherency per image: ``100 * (Pearson(S(x), S'(x * S)) + 1) / 2``, with ``S'`` the method rerun on the
    masked image; 50 where either map is constant."""
    return 100 * (pearson(saliency, rerun) + 1) / 2


def adcc(drop: Tensor, coherence: Tensor, simplicity: Tensor) -> Tensor:
    """ADCC (Poppi et al. 2021) in percent from AD, Coherency and Complexity in percent (dataset averages):
    ``3 / (1/Coh + 1/(1 - Com) + 1/(1 - AD))``; 0 when any of the three terms is 0."""
    terms = torch.stack([coherence, 100 - simplicity, 100 - drop]) / 100
    positive = (terms > 0).all(0)
    harmonic = 3 / (1 / torch.where(terms > 0, terms, 1.0)).sum(0)
    return 100 * torch.where(positive, harmonic, 0.0)


def cosine_similarity(alpha: Tensor, reference: Tensor) -> Tensor:
    """``alpha . ref / (|alpha| |ref|)`` per image; 0 when either vector is zero."""
    norms = alpha.norm(dim=1) * reference.norm(dim=1)
    return torch.where(norms > 0, (alpha * reference).sum(1) / torch.where(norms > 0, norms, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

def evaluate(model: nn.Module, images: Tensor, explanation: Explanation | Tensor,
             metrics: Sequence[str] = ("ic", "ad", "add"), *, target: Optional[Tensor] = None,
             extra_inputs: tuple = (), boxes: Optional[Sequence[Tensor] | Tensor] = None,
             masks: Optional[Tensor] = None, reference_alpha: Optional[Tensor] = None,
             explainer: Optional[Explainer] = None, method_options: Optional[dict] = None,
             steps: int = 41, insertion_start: str = "zeros", batch_size: int = 256) -> pd.DataFrame:
    """Per-image values of ``metrics`` for the saliency maps of ``explanation``: a tidy DataFrame with
    columns ``image``, ``metric``, ``value``.

    ``explanation``: an ``Explanation`` or saliency maps ``[B, H, W]`` in [0, 1] (then ``target`` is the
    explained class, default the predicted one). Metrics (``METRICS``): ``ic``, ``ad``, ``add``,
    ``add_clamped``, ``insertion``, ``deletion`` (``steps`` values of ``delta``; ``insertion_start`` "zeros"
    as LIFT-CAM or "blur" as RISE), ``pointing_box`` (needs ``boxes``), ``pointing_mask`` (needs ``masks``),
    ``complexity``, and, for an ``Explanation`` only, ``coherency`` (reruns the method; pass ``explainer``
    to reuse one and ``method_options`` such as ``n_permutations``), ``local_accuracy_gap`` and ``cosine``
    (to ``reference_alpha`` ``[B, K]``). ``extra_inputs`` (a VQA question) are repeated for every masked copy.
    """
    metrics = _check_metrics(metrics, explanation, boxes, masks, reference_alpha)
    images, extra_inputs, saliency, target = _check_inputs(model, images, explanation, target, extra_inputs)
    values: dict[str, Tensor] = {}
    scored = {"ic", "ad", "add", "add_clamped"} & set(metrics)
    if scored:
        full, kept, removed = class_probability(
            model, torch.cat([images, images * saliency[:, None], images * (1 - saliency[:, None])]), target,
            extra_inputs, torch.arange(len(images), device=images.device).repeat(3), batch_size).view(3, -1)
        values |= {"ic": increase_in_confidence(full, kept), "ad": average_drop(full, kept),
                   "add": drop_in_deletion(full, removed), "add_clamped": drop_in_deletion(full, removed, True)}
    if {"insertion", "deletion"} & set(metrics):
        curves = insertion_deletion_curves(model, images, saliency, target, extra_inputs, steps,
                                           insertion_start, batch_size)
        values |= {"insertion": area_under_curve(curves[0]), "deletion": area_under_curve(curves[1])}
    if "pointing_box" in metrics:
        values["pointing_box"] = energy_pointing_game(saliency, boxes_to_masks(boxes, saliency.shape[-2:]).to(saliency))
    if "pointing_mask" in metrics:
        values["pointing_mask"] = energy_pointing_game(saliency, _check_masks(masks, saliency))
    if "complexity" in metrics:
        values["complexity"] = complexity(saliency)
    if "coherency" in metrics:
        explainer = explainer or Explainer(model, explanation.layer)
        rerun = explainer(images * saliency[:, None], explanation.method, target, explanation.utility,
                          extra_inputs=extra_inputs, **(method_options or {})).saliency
        values["coherency"] = coherency(saliency, rerun)
    if "local_accuracy_gap" in metrics:
        values["local_accuracy_gap"] = explanation.local_accuracy_gap
    if "cosine" in metrics:
        values["cosine"] = cosine_similarity(explanation.alpha, _check_reference(reference_alpha, explanation.alpha))
    return _tidy({name: values[name] for name in metrics})


def _tidy(values: dict[str, Tensor]) -> pd.DataFrame:
    """``{metric: [B]}`` to rows ``(image, metric, value)``, images in order within each metric."""
    frames = [pd.DataFrame({"image": range(len(v)), "metric": name, "value": v.detach().double().cpu().numpy()})
              for name, v in values.items()]
    return pd.concat(frames, ignore_index=True)


def _check_metrics(metrics: Sequence[str], explanation: Explanation | Tensor, boxes, masks,
                   reference_alpha) -> list[str]:
    """Known metric names, each with the inputs it needs."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)} (ADCC comes from summarise)")
    if not isinstance(explanation, Explanation) and NEEDS_EXPLANATION & set(metrics):
        raise ValueError(f"metrics {sorted(NEEDS_EXPLANATION & set(metrics))} need an Explanation, "
                         "not bare saliency maps")
    for metric, given, name in (("pointing_box", boxes, "boxes"), ("pointing_mask", masks, "masks"),
                                ("cosine", reference_alpha, "reference_alpha")):
        if metric in metrics and given is None:
            raise ValueError(f"metric {metric!r} needs {name}=...")
    return metrics


def _check_inputs(model: nn.Module, images: Tensor, explanation: Explanation | Tensor,
                  target: Optional[Tensor], extra_inputs: tuple) -> tuple[Tensor, tuple, Tensor, Tensor]:
    """Images, extra inputs, saliency and target on the model's device, with matching shapes."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
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
    elif target is None:
        with evaluating(model), torch.no_grad():
            target = model(images, *extra_inputs).argmax(1)
    target = torch.as_tensor(target, device=device).long().reshape(-1).expand(len(images))
    return images, extra_inputs, saliency, target


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

    Groups are all columns but ``image``, ``metric`` and ``value``. Where a group has ``ad``, ``coherency``
    and ``complexity`` on the same images, an ``adcc`` row is added: ADCC of the three means, its interval
    from the same resamples.
    """
    groups = [c for c in table.columns if c not in ("image", "metric", "value")]
    rows = []
    for key, group in (table.groupby(groups, sort=False, dropna=False) if groups else [((), table)]):
        wide = group.pivot_table(index="image", columns="metric", values="value", sort=False)
        names = list(wide.columns)
        means = torch.tensor(wide.mean().to_numpy())[None]
        resampled = _resample_columns(wide, n_resamples, seed)
        if {"ad", "coherency", "complexity"} <= set(names):
            pick = [names.index(m) for m in ("ad", "coherency", "complexity")]
            means = torch.cat([means, adcc(*means[:, pick].T)[:, None]], 1)
            resampled = torch.cat([resampled, adcc(*resampled[:, pick].T)[:, None]], 1)
            names.append("adcc")
        low, high = _percentiles(resampled, level)
        key = key if isinstance(key, tuple) else (key,)
        counts = wide.notna().sum().to_dict()
        if "adcc" in names:
            counts["adcc"] = min(counts[m] for m in ("ad", "coherency", "complexity"))
        rows += [dict(zip(groups, key), metric=name, mean=float(means[0, i]), low=float(low[i]),
                      high=float(high[i]), n=int(counts[name])) for i, name in enumerate(names)]
    return pd.DataFrame(rows)


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


__all__ = ["METRICS", "evaluate", "summarise", "class_probability", "top_pixel_masks", "blurred",
           "insertion_deletion_curves", "increase_in_confidence", "average_drop", "drop_in_deletion",
           "area_under_curve", "energy_pointing_game", "boxes_to_masks", "complexity", "pearson", "coherency",
           "adcc", "cosine_similarity", "bootstrap_means"]

"""Is method A better than method B? Paired differences on the same images, with an interval and a verdict.

Every comparison in the book and in ``reproduce`` goes through here, so one sign convention holds:
the *improvement* of ``first`` over ``second`` is ``first - second`` for a metric where higher is better
and ``second - first`` where lower is better (``metrics.METRICS[name].higher_is_better``). Its 95 %
interval is a percentile bootstrap over images (paired: both methods are resampled on the same images).
The verdict is "better" or "worse" when the interval excludes 0, and "tie" when it contains 0.

>>> compare.improvement(values, "ad", {"method": "lift"}, {"method": "gradcam"})  # doctest: +SKIP
{'metric': 'ad', 'improvement': 0.05, 'low': -1.4, 'high': 1.6, 'verdict': 'tie', 'n': 192, 'mde': 2.1}
"""
from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import pandas as pd
import torch
from torch import Tensor

from . import metrics

VERDICTS = ("better", "worse", "tie")


def paired_values(values: pd.DataFrame, metric: str, first: dict, second: dict) -> Tensor:
    """``[N, 2]`` per-image values of ``first`` and ``second`` on the images both have.

    ``values`` is tidy (columns ``image``, ``metric``, ``value`` and any others); ``first``/``second`` select
    rows by column values, e.g. ``{"method": "lift", "utility": "logit"}``.
    """
    def pick(selection: dict) -> pd.Series:
        mask = values.metric == metric
        for column, value in selection.items():
            mask &= values[column] == value
        return values[mask].set_index("image").value

    sides = [pick(first), pick(second)]
    if not all(side.index.is_unique for side in sides):
        raise ValueError(f"the selections {first} / {second} match several rows per image for {metric!r}; "
                         "add the columns that tell them apart (table, model, utility, ...)")
    joined = pd.concat(sides, axis=1, join="inner").dropna()
    if joined.empty:
        raise ValueError(f"no images have metric {metric!r} for both {first} and {second}; "
                         "check the selections against the table's columns")
    return torch.tensor(joined.to_numpy(), dtype=torch.float64)


def paired_difference(values: pd.DataFrame, metric: str, first: dict, second: dict, n_resamples: int = 1000,
                      level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``first - second`` over the images both have, with its paired bootstrap interval."""
    pairs = paired_values(values, metric, first, second)
    difference = pairs[:, :1] - pairs[:, 1:]
    low, high = torch.quantile(metrics.bootstrap_means(difference, n_resamples, seed)[:, 0],
                               torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(difference.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """An interval of an improvement: "better" above 0, "worse" below 0, "tie" when it contains 0."""
    return "better" if low > 0 else "worse" if high < 0 else "tie"


def minimum_detectable_effect(standard_error: float, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at ``level`` detects with probability ``power``:
    ``(z_{(1+level)/2} + z_power) * SE`` (normal approximation; ``SE = sd / sqrt(n)`` for a mean).

    When every paired difference is the same (two methods that agree on every image), ``SE = 0`` and so is
    the minimum detectable effect: the sample has no spread to hide a difference in.
    """
    normal = NormalDist()
    return float((normal.inv_cdf((1 + level) / 2) + normal.inv_cdf(power)) * standard_error)


def improvement(values: pd.DataFrame, metric: str, first: dict, second: dict, n_resamples: int = 1000,
                level: float = 0.95, seed: int = 0) -> dict:
    """How much better ``first`` is than ``second`` on ``metric`` (positive: better, in the metric's units),
    with its paired interval, verdict, number of images and minimum detectable effect.

    A dataset-level metric (ADCC, ARCC) is compared by resampling the images once for both methods and
    recomputing the combination of the means on each side.
    """
    spec = metrics.METRICS[metric]
    sign = 1.0 if spec.higher_is_better else -1.0
    if spec.combine is None:
        pairs = paired_values(values, metric, first, second)
        difference = pairs[:, :1] - pairs[:, 1:]
        resampled = metrics.bootstrap_means(difference, n_resamples, seed)[:, 0]
        mean, n = float(difference.mean()), len(pairs)
        standard_error = float(difference.std() / n ** 0.5) if n > 1 else float("inf")
    else:
        parts = [paired_values(values, part, first, second) for part in spec.combines]
        n = len(parts[0])
        if any(len(part) != n for part in parts):
            raise ValueError(f"{metric} combines {spec.combines}: they must cover the same images for both sides")
        stacked = torch.cat(parts, 1)  # columns: part 1 first, part 1 second, part 2 first, ...
        both = lambda means: spec.combine(*means[..., 0::2].T) - spec.combine(*means[..., 1::2].T)  # noqa: E731
        resampled = both(metrics.bootstrap_means(stacked, n_resamples, seed))
        mean, standard_error = float(both(stacked.mean(0, keepdim=True))[0]), float(resampled.std())
    low, high = torch.quantile(resampled.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2],
                                                                  dtype=torch.float64)).tolist()
    low, high = sorted((sign * low, sign * high))
    return dict(metric=metric, improvement=sign * mean, low=low, high=high, verdict=verdict(low, high),
                n=n, mde=minimum_detectable_effect(standard_error, level))


def compare(values: pd.DataFrame, first: dict, second: dict, metric_names: Sequence[str],
            by: Sequence[str] = ("model",), **options) -> pd.DataFrame:
    """``improvement`` of ``first`` over ``second`` for each metric within each group of ``by`` columns:
    one row per (group, metric) that both selections have."""
    rows = []
    groups = values.groupby(list(by), sort=False) if by else [((), values)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for metric in metric_names:
            try:
                rows.append(dict(zip(by, key)) | improvement(group, metric, first, second, **options))
            except ValueError as error:  # this group lacks one side: no row, but not a silent duplicate
                if "several rows" in str(error):
                    raise
    if not rows:
        raise ValueError(f"no group has any of the metrics {list(metric_names)} for both {first} and {second}; "
                         "check the selections against the table's columns")
    return pd.DataFrame(rows)


__all__ = ["VERDICTS", "paired_values", "paired_difference", "verdict", "minimum_detectable_effect",
           "improvement", "compare"]

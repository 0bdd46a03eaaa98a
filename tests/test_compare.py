"""Paired comparisons: one sign convention, intervals that cover, verdicts that say tie, and ADCC compared paired."""
import numpy as np
import pandas as pd
import pytest
import torch

from cam_lib import compare, metrics


def tidy(method: str, metric: str, values, utility: str = "logit") -> pd.DataFrame:
    return pd.DataFrame({"method": method, "utility": utility, "image": range(len(values)), "metric": metric,
                         "value": values})


def test_improvement_follows_the_metric_direction():
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 80, 200)
    values = pd.concat([tidy("a", "ad", base - 5), tidy("b", "ad", base), tidy("a", "ic", base + 5),
                        tidy("b", "ic", base)])
    lower = compare.improvement(values, "ad", {"method": "a"}, {"method": "b"})
    higher = compare.improvement(values, "ic", {"method": "a"}, {"method": "b"})
    assert lower["improvement"] == pytest.approx(5) and higher["improvement"] == pytest.approx(5)
    assert lower["verdict"] == higher["verdict"] == "better"
    assert compare.improvement(values, "ad", {"method": "b"}, {"method": "a"})["verdict"] == "worse"
    assert lower["n"] == 200 and lower["mde"] == 0  # identical differences: no spread


def test_noise_gives_a_tie_and_the_interval_covers_the_mean():
    rng = np.random.default_rng(1)
    values = pd.concat([tidy("a", "add", rng.normal(0, 1, 100)), tidy("b", "add", rng.normal(0, 1, 100))])
    found = compare.improvement(values, "add", {"method": "a"}, {"method": "b"})
    assert found["low"] <= found["improvement"] <= found["high"]
    difference = values[values.method == "a"].value.to_numpy() - values[values.method == "b"].value.to_numpy()
    assert found["improvement"] == pytest.approx(difference.mean())
    expected_mde = (1.959964 + 0.841621) * difference.std(ddof=1) / 10
    assert found["mde"] == pytest.approx(expected_mde, rel=1e-4)
    assert (found["verdict"] == "tie") == (found["low"] <= 0 <= found["high"])


def test_pairing_beats_comparing_two_intervals():
    """A small consistent gain under large image-to-image spread: paired, it is found."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 100, 300)
    values = pd.concat([tidy("a", "insertion", base + 0.5 + rng.normal(0, 0.1, 300)), tidy("b", "insertion", base)])
    assert compare.improvement(values, "insertion", {"method": "a"}, {"method": "b"})["verdict"] == "better"
    summary = metrics.summarise(values).set_index("method")
    assert summary.loc["a", "low"] < summary.loc["b", "high"]  # the unpaired intervals overlap


def test_dataset_level_metrics_are_compared_by_a_paired_bootstrap():
    rng = np.random.default_rng(3)
    frames = []
    for method, shift in (("a", -10), ("b", 0)):
        for metric, centre in (("ad", 50 + shift), ("coherency", 70), ("complexity", 30)):
            frames.append(tidy(method, metric, rng.normal(centre, 5, 80)))
    values = pd.concat(frames)
    found = compare.improvement(values, "adcc", {"method": "a"}, {"method": "b"})
    means = values.groupby(["method", "metric"]).value.mean()
    by_hand = [metrics.adcc(*torch.tensor([means[m, "ad"], means[m, "coherency"], means[m, "complexity"]])).item()
               for m in ("a", "b")]
    assert found["improvement"] == pytest.approx(by_hand[0] - by_hand[1])
    assert found["verdict"] == "better" and found["low"] <= found["improvement"] <= found["high"]


def test_compare_groups_and_rejects_ambiguous_selections():
    values = pd.concat([tidy("a", "ad", [1.0, 2.0, 3.0]).assign(model=m) for m in ("x", "y")]
                       + [tidy("b", "ad", [2.0, 2.0, 4.0]).assign(model=m) for m in ("x", "y")])
    table = compare.compare(values, {"method": "a"}, {"method": "b"}, ["ad"], by=("model",))
    assert list(table.model) == ["x", "y"] and np.allclose(table.improvement, 2 / 3)
    with pytest.raises(ValueError, match="several rows per image"):
        compare.improvement(values, "ad", {"method": "a"}, {"method": "b"})
    with pytest.raises(ValueError, match="no group has any"):
        compare.compare(values, {"method": "a"}, {"method": "typo"}, ["ad"], by=("model",))
    with pytest.raises(ValueError, match="no images"):
        compare.improvement(values[values.model == "x"], "ad", {"method": "a"}, {"method": "c"})


def test_verdict_words():
    assert [compare.verdict(*bounds) for bounds in ((0.1, 1), (-1, -0.1), (-1, 1), (0, 1))] == [
        "better", "worse", "tie", "tie"]

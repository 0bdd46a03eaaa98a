"""Each metric against a direct re-implementation of its definition, on cases whose answer is known by hand."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

import cam_lib
from cam_lib import metrics
from toy_models import GapNet, TwoInputNet, VggNet, images, seeded

REGION = torch.zeros(16, 16)
REGION[4:8, 2:10] = 1  # the only pixels the region model looks at


class RegionNet(nn.Module):
    """Two classes; class 0's logit is 4 * the mean of the input over ``REGION``: only those pixels matter."""

    def __init__(self):
        super().__init__()
        self.register_buffer("region", REGION)
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        evidence = (x.mean(1) * self.region).sum((1, 2)) / self.region.sum()
        return torch.stack([self.scale * evidence, torch.zeros_like(evidence)], 1)


def probability(model, x, target, *extra):
    return model(x, *extra).softmax(1)[torch.arange(len(x)), target]


def test_drops_by_hand():
    full, kept, removed = torch.tensor([0.5, 0.8]), torch.tensor([0.6, 0.4]), torch.tensor([0.6, 0.2])
    assert metrics.increase_in_confidence(full, kept).tolist() == [100, 0]
    assert torch.allclose(metrics.average_drop(full, kept), torch.tensor([0.0, 50.0]))
    assert torch.allclose(metrics.drop_in_deletion(full, removed), torch.tensor([-20.0, 75.0]))
    assert torch.allclose(metrics.drop_in_deletion(full, removed, clamp=True), torch.tensor([0.0, 75.0]))


@pytest.mark.parametrize("model, extra", [(seeded(VggNet), ()), (seeded(TwoInputNet), (torch.randint(7, (4, 5)),))])
def test_ic_ad_add_match_their_definitions(model, extra):
    x, saliency = images(4), torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(1))
    table = metrics.evaluate(model, x, saliency, ["ic", "ad", "add", "add_clamped"], extra_inputs=extra)
    target = model(x, *extra).argmax(1)
    y = probability(model, x, target, *extra)
    o = probability(model, x * saliency[:, None], target, *extra)
    d = probability(model, x * (1 - saliency[:, None]), target, *extra)
    expected = {"ic": 100.0 * (y < o), "ad": 100 * torch.relu(y - o) / y, "add": 100 * (y - d) / y,
                "add_clamped": 100 * torch.relu(y - d) / y}
    for name, values in expected.items():
        got = table[table.metric == name].sort_values("image").value.to_numpy()
        np.testing.assert_allclose(got, values.detach().numpy(), rtol=1e-5, atol=1e-6)


def reference_curves(model, x, saliency, target, steps, start):
    """Insertion and deletion one image, one step at a time, with numpy's ordering of pixels."""
    insertion, deletion = [], []
    for image, s, c in zip(x, saliency, target):
        order = np.argsort(-s.flatten().numpy(), kind="stable")
        ins, dele = [], []
        for delta in np.linspace(0, 1, steps):
            mask = torch.zeros(s.numel())
            mask[torch.from_numpy(order[:int(round(delta * s.numel()))].copy())] = 1
            mask = mask.view_as(s)
            base = gaussian_blur(image[None], [11, 11], [5.0, 5.0])[0] if start == "blur" else torch.zeros_like(image)
            ins.append(probability(model, (image * mask + base * (1 - mask))[None], c[None]).item())
            dele.append(probability(model, (image * (1 - mask))[None], c[None]).item())
        insertion.append(np.trapezoid(ins, dx=1 / (steps - 1)))
        deletion.append(np.trapezoid(dele, dx=1 / (steps - 1)))
    return np.array(insertion), np.array(deletion)


@pytest.mark.parametrize("start", ["zeros", "blur"])
def test_insertion_deletion_match_a_step_by_step_loop(start):
    model, x = seeded(VggNet), images(3)
    saliency = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    table = metrics.evaluate(model, x, saliency, ["insertion", "deletion"], steps=11, insertion_start=start,
                             batch_size=7)
    insertion, deletion = reference_curves(model, x, saliency, model(x).argmax(1), 11, start)
    np.testing.assert_allclose(table[table.metric == "insertion"].value, insertion, rtol=1e-5)
    np.testing.assert_allclose(table[table.metric == "deletion"].value, deletion, rtol=1e-5)


def test_top_pixel_masks_keep_the_right_count_and_pixels():
    saliency = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    masks = metrics.top_pixel_masks(saliency, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert masks.sum((2, 3)).tolist() == [[0, 1, 2, 4]]
    assert masks[0, 2].tolist() == [[0, 1], [1, 0]]


def test_perfect_saliency_beats_random_on_insertion_and_deletion():
    model, x = RegionNet(), images(4).abs()
    perfect = REGION.expand(4, 16, 16)
    random = torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(3))
    target = torch.zeros(4, dtype=torch.long)
    good = metrics.evaluate(model, x, perfect, ["insertion", "deletion"], target=target).groupby("metric").value.mean()
    bad = metrics.evaluate(model, x, random, ["insertion", "deletion"], target=target).groupby("metric").value.mean()
    assert good["insertion"] > bad["insertion"] + 0.05
    assert good["deletion"] < bad["deletion"] - 0.05


def test_batching_does_not_change_values():
    model, x = seeded(VggNet), images(5)
    saliency = torch.rand(5, 16, 16, generator=torch.Generator().manual_seed(4))
    chosen = ["ic", "ad", "add", "insertion", "deletion"]
    one = metrics.evaluate(model, x, saliency, chosen, batch_size=1)
    many = metrics.evaluate(model, x, saliency, chosen, batch_size=1000)
    np.testing.assert_allclose(one.value, many.value, rtol=1e-4, atol=1e-4)


def test_pointing_game_with_masks_and_boxes():
    saliency = REGION.expand(2, 16, 16)
    assert metrics.energy_pointing_game(saliency, REGION.expand(2, 16, 16)).tolist() == [100, 100]
    boxes = [torch.tensor([[2, 4, 10, 8]]), torch.tensor([[2, 4, 6, 8], [6, 4, 10, 8]])]
    assert torch.equal(metrics.boxes_to_masks(boxes, (16, 16)), REGION.expand(2, 16, 16))
    padded = torch.tensor([[[2, 4, 10, 8], [0, 0, 0, 0]], [[2, 4, 6, 8], [6, 4, 10, 8]]])
    assert torch.equal(metrics.boxes_to_masks(padded, (16, 16)), REGION.expand(2, 16, 16))
    half = torch.zeros(1, 16, 16)
    half[0, 4, 2], half[0, 15, 15] = 1.0, 1.0  # equal energy inside and outside
    assert metrics.energy_pointing_game(half, REGION[None]).item() == pytest.approx(50)
    table = metrics.evaluate(seeded(VggNet), images(2), saliency, ["pointing_box", "pointing_mask"],
                             boxes=boxes, masks=REGION.expand(2, 16, 16))
    assert table.value.tolist() == [100, 100, 100, 100]


def test_constant_saliency_gives_the_documented_values():
    model, x = seeded(VggNet), images(3)
    constant = torch.zeros(3, 16, 16)  # what min-max makes of any constant map
    table = metrics.evaluate(model, x, constant, ["ic", "ad", "add", "add_clamped", "insertion", "deletion",
                                                  "pointing_box", "pointing_mask", "complexity"],
                             boxes=[torch.tensor([[0, 0, 8, 16]])] * 3, masks=REGION.expand(3, 16, 16))
    assert table.value.notna().all()
    values = table.groupby("metric").value.mean()
    target = model(x).argmax(1)
    y, blank = probability(model, x, target), probability(model, torch.zeros_like(x), target)
    assert values["add"] == values["add_clamped"] == values["complexity"] == 0
    assert values["ad"] == pytest.approx((100 * torch.relu(y - blank) / y).mean().item(), rel=1e-5)
    assert values["pointing_box"] == pytest.approx(50)
    assert values["pointing_mask"] == pytest.approx(100 * REGION.mean().item())
    assert metrics.coherency(constant, torch.rand(3, 16, 16)).tolist() == [50, 50, 50]
    assert metrics.cosine_similarity(torch.zeros(2, 4), torch.ones(2, 4)).tolist() == [0, 0]


def test_coherency_complexity_adcc_by_hand():
    a = torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(5))
    b = torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(6))
    expected = [np.corrcoef(p.flatten(), q.flatten())[0, 1] for p, q in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(metrics.pearson(a, b), expected, rtol=1e-5)
    assert torch.allclose(metrics.coherency(a, a), torch.full((4,), 100.0))
    assert torch.allclose(metrics.coherency(a, -a), torch.zeros(4), atol=1e-4)
    assert torch.allclose(metrics.complexity(a), 100 * a.mean((1, 2)))
    assert metrics.adcc(torch.tensor(0.0), torch.tensor(100.0), torch.tensor(0.0)).item() == pytest.approx(100)
    assert metrics.adcc(torch.tensor(50.0), torch.tensor(50.0), torch.tensor(50.0)).item() == pytest.approx(50)
    assert metrics.adcc(torch.tensor(100.0), torch.tensor(90.0), torch.tensor(10.0)).item() == 0


def test_explanation_metrics_on_the_linear_head():
    model, x = seeded(GapNet), images(3)
    explainer = cam_lib.Explainer(model, "features")
    exact, lift, ablation = (explainer(x, m) for m in ("exact", "lift", "ablation"))
    table = metrics.evaluate(model, x, lift, ["cosine", "local_accuracy_gap", "coherency"],
                             reference_alpha=exact.alpha, explainer=explainer)
    values = table.groupby("metric").value
    assert values.min()["cosine"] == pytest.approx(1, abs=1e-5)
    assert values.max()["local_accuracy_gap"] < 1e-4
    rerun = explainer(x * lift.saliency[:, None], "lift", lift.target).saliency
    np.testing.assert_allclose(table[table.metric == "coherency"].value, metrics.coherency(lift.saliency, rerun))
    gap = metrics.evaluate(model, x, ablation, ["local_accuracy_gap"]).value
    assert (gap > 1e-3).all()
    np.testing.assert_allclose(metrics.cosine_similarity(ablation.alpha, exact.alpha),
                               F.cosine_similarity(ablation.alpha, exact.alpha), rtol=1e-5)


def test_summary_intervals_contain_the_mean_and_adcc_is_added():
    rng = np.random.default_rng(0)
    table = pd.concat([pd.DataFrame({"method": method, "image": range(50), "metric": metric,
                                     "value": rng.uniform(0, 100, 50)})
                       for method in ("a", "b") for metric in ("ad", "coherency", "complexity")])
    summary = metrics.summarise(table, n_resamples=500)
    assert set(summary.metric) == {"ad", "coherency", "complexity", "adcc"}
    assert ((summary["low"] <= summary["mean"]) & (summary["mean"] <= summary["high"])).all()
    assert (summary["high"] - summary["low"] > 0).all()
    row = summary[(summary.method == "a")].set_index("metric")["mean"]
    assert row["adcc"] == pytest.approx(metrics.adcc(*torch.tensor(row[["ad", "coherency", "complexity"]].to_numpy(
        dtype=float))).item())
    assert (summary.n == 50).all()


@pytest.mark.parametrize("call, words", [
    (lambda m, x: metrics.evaluate(m, x, torch.zeros(3, 8, 8)), "saliency must have shape"),
    (lambda m, x: metrics.evaluate(m, x, torch.zeros(3, 16, 16), ["auc"]), "unknown metrics"),
    (lambda m, x: metrics.evaluate(m, x, torch.zeros(3, 16, 16), ["coherency"]), "need an Explanation"),
    (lambda m, x: metrics.evaluate(m, x, torch.zeros(3, 16, 16), ["pointing_box"]), "needs boxes"),
    (lambda m, x: metrics.evaluate(m, x, torch.zeros(3, 16, 16), ["pointing_mask"], masks=torch.ones(3, 8, 8)),
     "masks must have"),
    (lambda m, x: metrics.evaluate(m, x, torch.zeros(3, 16, 16), ["insertion"], insertion_start="noise"),
     "insertion start"),
    (lambda m, x: metrics.evaluate(m, x, torch.full((3, 16, 16), float("nan"))), "NaN"),
])
def test_bad_input_gets_a_clear_error(call, words):
    with pytest.raises(ValueError) as info:
        call(seeded(VggNet), images(3))
    assert words in str(info.value)

"""Each metric against a direct re-implementation of its definition, on cases whose answer is known by hand."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur
from toy_models import GapNet, TwoInputNet, Untraceable, VggNet, images, seeded

import cam_lib
from cam_lib import metrics

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
            mask[torch.from_numpy(order[:round(delta * s.numel())].copy())] = 1
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


def test_coherency_explains_again_with_hooks_when_the_explanation_was_made_with_hooks():
    """An Explanation made with ``trace=False`` is explained again with hooks, not traced anew (which would warn
    that torch.fx fails on this model)."""
    model, x = seeded(Untraceable), images(2)
    lift = cam_lib.Explainer(model, "features", trace=False)(x, "lift")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = metrics.evaluate(model, x, lift, ["coherency", "channel_correlation"], n_subsets=8)
    assert table.value.notna().all()


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


def test_argmax_pointing_game_by_hand():
    saliency = torch.zeros(3, 16, 16)
    saliency[0, 5, 3] = 1.0           # peak inside the region
    saliency[1, 12, 12] = 1.0         # peak outside, 2 pixels below the region's corner at (7, 9)
    saliency[1, 5, 3] = 0.9
    region = REGION.expand(3, 16, 16)  # image 2: constant map, every pixel ties
    hits = metrics.argmax_pointing_game(saliency, region)
    assert hits.tolist() == pytest.approx([100, 0, 100 * REGION.mean().item()])
    saliency[1, 12, 12], saliency[1, 9, 11] = 0.0, 1.0  # 2 rows below and 2 columns right of the region
    assert metrics.argmax_pointing_game(saliency[1:2], region[:1], tolerance=1).item() == 0
    assert metrics.argmax_pointing_game(saliency[1:2], region[:1], tolerance=2).item() == 100
    tie = torch.zeros(1, 16, 16)
    tie[0, 5, 3] = tie[0, 0, 0] = 1.0  # two maxima, one inside: half a hit
    assert metrics.argmax_pointing_game(tie, region[:1]).item() == 50
    table = metrics.evaluate(seeded(VggNet), images(3), saliency, ["pointing_game_box", "pointing_game_mask"],
                             boxes=[torch.tensor([[2, 4, 10, 8]])] * 3, masks=region)
    assert table.groupby("metric").value.apply(list).to_dict() == {
        "pointing_game_box": pytest.approx([100, 0, 100 * REGION.mean().item()]),
        "pointing_game_mask": pytest.approx([100, 0, 100 * REGION.mean().item()])}


def test_faithfulness_correlation_matches_its_definition():
    model, x = seeded(VggNet), images(3)
    saliency = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(7))
    table = metrics.evaluate(model, x, saliency, ["faithfulness_correlation"], n_subsets=20, subset_fraction=0.3,
                             patch=4, seed=5)
    target = model(x).argmax(1)
    generator = torch.Generator().manual_seed(5)
    chosen = torch.rand(20, 16, generator=generator).argsort(1) < round(0.3 * 16)  # 4 x 4 grid of patches
    expected = []
    for image, s, c in zip(x, saliency, target):
        sums, drops = [], []
        for cells in chosen:
            removed = cells.view(4, 4).repeat_interleave(4, 0).repeat_interleave(4, 1).float()
            sums.append((s * removed).sum().item())
            drops.append((probability(model, image[None], c[None]) -
                          probability(model, (image * (1 - removed))[None], c[None])).item())
        expected.append(np.corrcoef(sums, drops)[0, 1])
    np.testing.assert_allclose(table.value, expected, rtol=1e-4, atol=1e-5)


def test_channel_correlation_is_one_for_shapley_values_of_an_additive_game():
    model, x = seeded(GapNet), images(3)
    explainer = cam_lib.Explainer(model, "features")
    scores = {method: metrics.evaluate(model, x, explainer(x, method), ["channel_correlation"], explainer=explainer)
              .value.to_numpy() for method in ("exact", "lift", "gradcam")}
    np.testing.assert_allclose(scores["exact"], 1, atol=1e-5)
    np.testing.assert_allclose(scores["lift"], 1, atol=1e-5)
    assert (scores["gradcam"] < 0.999).all()


def test_channel_correlation_matches_its_definition_on_a_nonlinear_head():
    model, x = seeded(VggNet), images(2)
    explainer = cam_lib.Explainer(model, "features")
    explanation = explainer(x, "gradcam", utility="softmax")
    value = metrics.evaluate(model, x, explanation, ["channel_correlation"], n_subsets=10, subset_fraction=0.5,
                             seed=3).value.to_numpy()
    players = explanation.alpha.shape[1]
    removed = (torch.rand(10, players, generator=torch.Generator().manual_seed(3)).argsort(1)
               < round(0.5 * players)).float()
    head_model = explainer.split(x, ())
    expected = []
    for image in range(2):
        drops, sums = [], []
        for coalition in removed:
            kept = head_model.activations[image:image + 1] * (1 - coalition)[None, :, None, None]
            logits = head_model.head(kept, torch.tensor([image]))
            drops.append((explanation.score[image] - logits.softmax(1)[0, explanation.target[image]]).item())
            sums.append((explanation.alpha[image] * coalition).sum().item())
        expected.append(np.corrcoef(sums, drops)[0, 1])
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5)


def test_arcc_by_hand_and_in_summaries():
    assert metrics.arcc(torch.tensor(100.0), torch.tensor(0.0), torch.tensor(0.5)).item() == pytest.approx(100)
    assert metrics.arcc(torch.tensor(50.0), torch.tensor(50.0), torch.tensor(0.25)).item() == pytest.approx(50)
    assert metrics.arcc(torch.tensor(90.0), torch.tensor(10.0), torch.tensor(-0.1)).item() == 0
    rng = np.random.default_rng(1)
    table = pd.concat([pd.DataFrame({"image": range(30), "metric": metric, "value": rng.uniform(low, high, 30)})
                       for metric, low, high in (("coherency", 60, 90), ("complexity", 10, 40), ("road", 0, 0.4))])
    row = metrics.summarise(table, n_resamples=200).set_index("metric")
    means = table.groupby("metric").value.mean()
    assert row.loc["arcc", "mean"] == pytest.approx(metrics.arcc(*torch.tensor(
        means[["coherency", "complexity", "road"]].to_numpy())).item())
    assert row.loc["arcc", "low"] <= row.loc["arcc", "mean"] <= row.loc["arcc", "high"]


def test_registry_gives_every_metric_a_direction_and_a_description():
    for name, metric in metrics.METRICS.items():
        assert metric.name == name and metric.description and metric.unit
        assert (metric.compute is None) != (metric.combine is None)
        assert set(metric.combines) <= set(metrics.METRICS)
    assert not metrics.METRICS["ad"].higher_is_better and metrics.METRICS["road"].higher_is_better
    with pytest.raises(ValueError, match="dataset averages"):
        metrics.evaluate(seeded(VggNet), images(2), torch.rand(2, 16, 16), ["adcc"])


def test_bare_maps_get_coherency_from_a_rerun_and_every_map_metric():
    model, x = seeded(VggNet), images(3)
    saliency = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(8))
    names = metrics.applicable(list(metrics.METRICS), has_explanation=False)
    names = [n for n in names if metrics.METRICS[n].compute is not None]
    assert "cosine" not in names and "channel_correlation" not in names and "coherency" in names
    table = metrics.evaluate(model, x, saliency, names, rerun=lambda masked: saliency, boxes=[torch.tensor(
        [[0, 0, 8, 8]])] * 3, masks=REGION.expand(3, 16, 16), road_percentages=(20, 80), n_subsets=8)
    assert set(table.metric) == set(names) and table.value.notna().all()
    np.testing.assert_allclose(table[table.metric == "coherency"].value, 100, rtol=1e-6)


def grad_cam_road(model, x, saliency, target, percentages):
    """ROAD curves from the grad-cam package (Rong et al.'s imputer, without noise): its percentile q removes
    the top (MoRF) or bottom (LeRF) 100 - q percent of the map."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in target]
    curves = []
    for removal in (RemoveMostRelevantFirst, RemoveLeastRelevantFirst):
        curves.append(np.stack([PerturbationConfidenceMetric(removal(100 - p, NoisyLinearImputer(noise=0)))(
            x, saliency.numpy(), targets, model, return_diff=False) for p in percentages], 1))
    return curves


@pytest.mark.parametrize("model", [RegionNet(), seeded(VggNet)])
def test_road_matches_the_grad_cam_reference(model):
    model.eval()
    x = images(3)
    saliency = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(9))
    target = model(x).argmax(1)
    percentages = (10, 30, 50, 70, 90)
    morf, lerf = metrics.road_curves(model, x, saliency, target, percentages=percentages, noise=0.0, batch_size=4)
    expected_morf, expected_lerf = grad_cam_road(model, x, saliency, target, percentages)
    np.testing.assert_allclose(morf.numpy(), expected_morf, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lerf.numpy(), expected_lerf, rtol=1e-4, atol=1e-5)
    table = metrics.evaluate(model, x, saliency, ["road_morf", "road_lerf", "road"], road_percentages=percentages,
                             road_noise=0.0).pivot_table(index="image", columns="metric", values="value")
    np.testing.assert_allclose(table.road, ((expected_lerf - expected_morf) / 2).mean(1), rtol=1e-4, atol=1e-5)


def test_road_of_a_perfect_map_on_a_model_that_reads_only_its_region():
    """RegionNet's output is a linear function of the pixels in REGION (12.5 % of the image): removing up to
    87.5 % least-relevant pixels of the perfect map leaves p_c exactly as it was, noise and all, while
    removing the most relevant first replaces the region by imputed values and changes it."""
    model, x = RegionNet(), images(2)
    perfect = REGION.expand(2, 16, 16) * (1 + 0.01 * torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1)))
    target = torch.zeros(2, dtype=torch.long)
    y = probability(model, x, target)
    morf, lerf = metrics.road_curves(model, x, perfect, target, percentages=(10, 50, 80), noise=0.01, seed=3)
    torch.testing.assert_close(lerf, y[:, None].expand(2, 3), rtol=1e-5, atol=1e-6)
    assert ((morf - y[:, None]).abs()[:, 1:] > 1e-4).all()
    again, _ = metrics.road_curves(model, x, perfect, target, percentages=(10, 50, 80), noise=0.01, seed=3)
    torch.testing.assert_close(morf, again)


def test_shared_passes_give_the_same_values_and_refuse_other_images():
    model, x = seeded(VggNet), images(4)
    maps = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    names = ["ic", "ad", "add", "faithfulness_correlation"]
    alone = [metrics.evaluate(model, x, m, names, n_subsets=12) for m in maps]
    passes = []
    model.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))
    shared, images_scored = {}, []
    together = []
    for saliency in maps:
        passes.clear()
        together.append(metrics.evaluate(model, x, saliency, names, n_subsets=12, shared=shared))
        images_scored.append(sum(passes))
    for first, second in zip(alone, together):
        pd.testing.assert_frame_equal(first, second, rtol=1e-5, atol=1e-6)
    # the first map pays for Y, O, D and 12 drops per image; the second only for its own O and D (and each
    # bare map for the pass that finds its target class)
    assert images_scored == [4 + 4 * (3 + 12), 4 + 4 * 2]
    with pytest.raises(ValueError, match="other images"):
        metrics.evaluate(model, images(4) + 1, maps[0], names, shared=shared)


def test_inference_copy_is_the_same_function_and_leaves_the_model_alone():
    from cam_lib import runtime, zoo
    loaded = zoo.load("shapes-vgg", torch.device("cpu"))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    fast = runtime.inference_copy(loaded.model)
    x = cam_lib.data.make_shape_scenes(16, 0).images
    with torch.no_grad():
        torch.testing.assert_close(fast(x).softmax(1), loaded.model(x).softmax(1), atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # folded into the convolutions
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in loaded.model.modules())


def test_an_explainer_of_another_layer_or_layout_is_refused():
    """Coherency explains again with ``explainer=``: one that cuts another layer, or reads it with another layout,
    would score another game, so evaluate says so instead."""
    model, x = seeded(GapNet), images(2)
    explanation = cam_lib.explain(model, x, "features.4", "gradcam")
    cases = {
        "layer 'features.1'": cam_lib.Explainer(model, "features.1"),
        "another reshape=": cam_lib.Explainer(model, "features.4", reshape="channels-last"),
    }
    for words, explainer in cases.items():
        with pytest.raises(ValueError, match=words):
            metrics.evaluate(model, x, explanation, ["coherency"], explainer=explainer)
    same = cam_lib.Explainer(model, "features.4")
    assert len(metrics.evaluate(model, x, explanation, ["coherency"], explainer=same)) == 2

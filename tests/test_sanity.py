"""Sanity checks: the similarity measures against their definitions, the cascade on tiny models."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage, stats
from torch import nn
from toy_models import GapNet, VggNet, images, seeded

import cam_lib
from cam_lib import sanity, zoo

METHODS = ["gradcam", "gradcam++", "hirescam", "scorecam", "ablation", "lift", "shapleycam-e"]


def maps(batch: int = 4, seed: int = 0, size: tuple = (16, 13)) -> torch.Tensor:
    return torch.rand(batch, *size, generator=torch.Generator().manual_seed(seed))


def scipy_spearman(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    return np.array([stats.spearmanr(a.flatten(), b.flatten()).statistic
                     for a, b in zip(first.double().numpy(), second.double().numpy())])


def test_ranks_average_ties():
    assert sanity.ranks(torch.tensor([[3.0, 1.0, 1.0, 2.0, 1.0]])).tolist() == [[5.0, 2.0, 2.0, 4.0, 2.0]]


def test_spearman_matches_scipy_on_random_maps():
    first, second = maps(5, 0), maps(5, 1)
    second[0] = first[0] + 0.3 * second[0]  # one correlated pair
    np.testing.assert_allclose(sanity.spearman(first, second).numpy(), scipy_spearman(first, second),
                               rtol=1e-5, atol=1e-6)


def test_spearman_matches_scipy_with_ties():
    """ReLU'd CAMs are mostly exact zeros; rounding adds ties among the positive values too."""
    first = (torch.randn(6, 12, 12, generator=torch.Generator().manual_seed(2)) - 0.5).relu()
    second = (first + 0.5 * torch.randn(6, 12, 12, generator=torch.Generator().manual_seed(3))).relu()
    first, second = (first * 4).round() / 4, (second * 4).round() / 4
    assert (first == 0).float().mean() > 0.5
    np.testing.assert_allclose(sanity.spearman(first, second).numpy(), scipy_spearman(first, second),
                               rtol=1e-5, atol=1e-6)


def test_spearman_is_one_under_monotone_maps_and_zero_for_constant_maps():
    first = maps(3)
    assert torch.allclose(sanity.spearman(first, first.exp() * 5 - 2), torch.ones(3))
    assert torch.allclose(sanity.spearman(first, -first), -torch.ones(3))
    blank = torch.zeros_like(first)
    assert sanity.spearman(first, blank).tolist() == [0.0] * 3 == sanity.spearman(blank, blank).tolist()


def reference_ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Wang et al. 2004 by its definition: Gaussian moments (sigma 1.5, 11 x 11), population covariance,
    averaged where the window fits."""
    def blur(values):  # truncate 3.5 sigma: radius int(3.5 * 1.5 + 0.5) = 5, an 11 x 11 window
        return ndimage.gaussian_filter(values, sigma=1.5, truncate=3.5)[5:-5, 5:-5]

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = blur(first), blur(second)
    var_x, var_y = blur(first * first) - mu_x ** 2, blur(second * second) - mu_y ** 2
    cov = blur(first * second) - mu_x * mu_y
    index = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.mean()


def test_ssim_matches_its_definition():
    first, second = maps(3, 0, (24, 19)), maps(3, 1, (24, 19))
    second[1] = 0.7 * first[1] + 0.3 * second[1]
    expected = [reference_ssim(a, b) for a, b in zip(first.double().numpy(), second.double().numpy())]
    np.testing.assert_allclose(sanity.ssim(first, second).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ssim_identity_symmetry_and_constants():
    first, second = maps(4, 0), maps(4, 1)
    assert torch.allclose(sanity.ssim(first, first), torch.ones(4))
    assert torch.allclose(sanity.ssim(first, second), sanity.ssim(second, first))
    assert (sanity.ssim(first, second) < 0.5).all()
    blank, full = torch.zeros_like(first), torch.ones_like(first)
    assert torch.allclose(sanity.ssim(blank, blank), torch.ones(4))
    c1 = 0.01 ** 2  # a constant 0 against a constant 1: only the luminance term is left
    assert torch.allclose(sanity.ssim(blank, full), torch.full((4,), c1 / (1 + c1)))
    with pytest.raises(ValueError, match="window"):
        sanity.ssim(maps(2, size=(8, 8)), maps(2, size=(8, 8)))
    with pytest.raises(ValueError, match="one shape"):
        sanity.spearman(maps(2), maps(3))


def test_blocks_run_top_down_with_their_batch_norms():
    toy = sanity.parameter_blocks(seeded(VggNet), "features.4", images(1))
    assert [(b.name, b.in_head) for b in toy] == [("classifier.5", True), ("classifier.3", True),
                                                 ("classifier.0", True), ("features.3", False),
                                                 ("features.0", False)]
    x = torch.zeros(1, 3, 64, 64)
    vgg = sanity.parameter_blocks(zoo.ShapesVGG(), zoo.SPECS["shapes-vgg"].layer, x)
    assert [b.modules for b in vgg][2:5] == [("classifier.0",), ("features.12", "features.13"),
                                             ("features.8", "features.9")]
    assert [b.in_head for b in vgg] == [True] * 3 + [False] * 4
    resnet = sanity.parameter_blocks(zoo.ShapesResNet(), zoo.SPECS["shapes-resnet"].layer, x)
    assert [b.in_head for b in resnet] == [True] + [False] * 10
    assert resnet[1].modules == ("layer3.body.3", "layer3.body.4")  # runs last in the body
    assert all(len(b.modules) == 2 for b in resnet[1:])  # every convolution with its batch norm


def fingerprint(model: nn.Module) -> tuple:
    return ([t.double().sum().item() for t in model.state_dict().values()],
            [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])


@pytest.fixture(scope="module")
def toy_cascade():
    model = seeded(VggNet)
    model.train()
    model.features.eval()
    model.classifier[0].weight.requires_grad_(False)
    before, rng = fingerprint(model), torch.get_rng_state()
    table = sanity.cascade(model, images(4), "features.4", METHODS)
    return table, before, rng, model


def test_cascade_leaves_the_model_and_the_random_state_alone(toy_cascade):
    table, before, rng, model = toy_cascade
    assert fingerprint(model) == before
    assert torch.equal(torch.get_rng_state(), rng)
    assert set(table.columns) == {"method", "step", "block", "part", "image", "metric", "value"}
    assert table.groupby("step").part.first().tolist() == ["none", "head", "head", "head", "body", "body"]


def test_step_zero_reproduces_the_trained_maps(toy_cascade):
    table = toy_cascade[0]
    first = table[table.step == 0]
    assert set(first.method) == set(METHODS) and set(first.metric) == {"spearman", "ssim"}
    np.testing.assert_allclose(first.value, 1.0, atol=1e-6)


def test_randomising_the_head_changes_gradcam(toy_cascade):
    table = toy_cascade[0]
    head = sanity.head_steps(table)
    values = table[(table.step == head) & (table.method == "gradcam")].groupby("metric").value.mean()
    assert values["spearman"] < 0.5 and values["ssim"] < 0.6


def test_a_map_blind_to_the_head_survives_it_and_not_the_body(monkeypatch):
    """Alpha = 1 for every channel: ReLU(sum_k A_k) cannot depend on the head, only on the body."""
    monkeypatch.setitem(cam_lib.METHODS, "features-only", lambda game: torch.ones_like(game.activations[:, :, 0, 0]))
    table = sanity.cascade(seeded(VggNet), images(4), "features.4", ["features-only", "gradcam"])
    blind = table[table.method == "features-only"]
    np.testing.assert_allclose(blind[blind.part == "head"].value, 1.0, atol=1e-6)
    assert blind[blind.part == "body"].groupby("step").value.mean().max() < 0.99
    flags = sanity.flag_survivors(table).set_index("method")
    assert flags.loc["features-only", "survives"] and not flags.loc["gradcam", "survives"]
    assert flags.loc["features-only", "low"] == pytest.approx(1.0)


def test_survivors_are_flagged_per_model():
    """Extra columns group the rows: each model's own last head step is used."""
    tables = [sanity.cascade(seeded(net), images(3), "features.4", ["gradcam"]).assign(model=name)
              for name, net in (("vgg", VggNet), ("gap", GapNet))]
    flags = sanity.flag_survivors(pd.concat(tables, ignore_index=True)).set_index("model")
    assert flags.loc["vgg", "step"] == 3 and flags.loc["gap", "step"] == 1
    assert flags.loc["gap", "block"] == "fc" and (flags["n"] == 3).all()


def test_blank_trained_maps_have_no_spearman_rows(monkeypatch):
    monkeypatch.setitem(cam_lib.METHODS, "blank", lambda game: torch.zeros_like(game.activations[:, :, 0, 0]))
    table = sanity.cascade(seeded(VggNet), images(2), "features.4", ["blank"])
    assert set(table.metric) == {"ssim"}
    np.testing.assert_allclose(table.value, 1.0)  # blank stays blank


def test_explicit_blocks_and_randomise():
    model = seeded(VggNet)
    table = sanity.cascade(model, images(2), "features.4", ["gradcam"], blocks=["classifier", ["features"]])
    assert table.groupby("step").block.first().tolist() == ["none", "classifier", "features"]
    assert table.groupby("step").part.first().tolist() == ["none", "head", "body"]
    blocks = sanity.parameter_blocks(model, "features.4", images(1))
    first, again = sanity.randomise(model, blocks[:2], seed=3), sanity.randomise(model, blocks[:2], seed=3)
    other = sanity.randomise(model, blocks[:2], seed=4)
    for name in ("classifier.5.weight", "classifier.3.weight"):
        assert torch.equal(first.get_parameter(name), again.get_parameter(name))
        assert not torch.equal(first.get_parameter(name), other.get_parameter(name))
        assert not torch.equal(first.get_parameter(name), model.get_parameter(name))
    assert torch.equal(first.get_parameter("classifier.0.weight"), model.get_parameter("classifier.0.weight"))


def test_bad_blocks_say_what_to_do():
    model = seeded(VggNet)
    with pytest.raises(ValueError, match="no modules"):
        sanity.cascade(model, images(2), "features.4", ["gradcam"], blocks=["classifer"])
    with pytest.raises(ValueError, match="no parameters"):
        sanity.cascade(model, images(2), "features.4", ["gradcam"], blocks=["pool"])
    table = sanity.cascade(model, images(2), "features.4", ["gradcam"], blocks=["features.3"])
    with pytest.raises(ValueError, match="no step"):
        sanity.flag_survivors(table)

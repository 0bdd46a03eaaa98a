"""The channel game's science: LIFT-CAM is exact on linear heads, local accuracy, SHAP-CAM convergence,
and the running-sum fast path agrees with plain head evaluations."""
import pytest
import torch
from torch import nn
from toy_models import CLASSES, FunctionalNet, GapNet, ReusedReluNet, SkipNet, VggNet, images, seeded

import cam_lib
from cam_lib.additive import OneDnnLinears


class WideVggNet(VggNet):
    """VggNet with a 1,100-wide hidden layer, like VGG-16's 4,096: running sums long enough for the CPU's
    step-by-step path."""

    def __init__(self, channels: int = 12):
        super().__init__(channels)
        self.classifier = nn.Sequential(nn.Linear(channels * 16, 1100), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(1100, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def relative_error(estimate, reference):
    return ((estimate - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("utility", ["logit", "softmax", "rest"])
def test_lift_equals_exact_shapley_on_a_linear_head(utility):
    model, x = seeded(GapNet, channels=12), images(4)
    exact = cam_lib.explain(model, x, "features", "exact", utility=utility)
    lift = cam_lib.explain(model, x, "features", "lift", utility=utility)
    if utility == "logit":  # F linear and u linear: the game is additive, LIFT-CAM is its Shapley value
        assert ((lift.alpha - exact.alpha).abs() / exact.alpha.abs().max(1, keepdim=True).values).max() < 1e-5
    assert exact.local_accuracy_gap.max() < 1e-5 * exact.score.abs().max()


@pytest.mark.parametrize("model_class", [VggNet, FunctionalNet, ReusedReluNet, SkipNet])
@pytest.mark.parametrize("utility", ["logit", "softmax", "rest"])
def test_lift_has_local_accuracy_on_nonlinear_heads(model_class, utility):
    model, x = seeded(model_class), images(4)
    layer = "inner" if model_class is SkipNet else "features"
    lift = cam_lib.explain(model, x, layer, "lift", utility=utility)
    assert (lift.alpha.sum(1) - (lift.score - lift.baseline)).abs().max() < 1e-5 * (1 + lift.score.abs().max())


def test_ablation_breaks_local_accuracy_on_a_nonlinear_head():
    model, x = seeded(VggNet), images(4)
    ablation = cam_lib.explain(model, x, "features", "ablation")
    assert (ablation.local_accuracy_gap > 1e-2).all()


def test_shap_converges_to_exact_on_a_nonlinear_head():
    model, x = seeded(VggNet, channels=10), images(2)
    exact = cam_lib.explain(model, x, "features", "exact").alpha
    errors = []
    for count in (4, 64, 1024):
        shap = cam_lib.explain(model, x, "features", "shap", n_permutations=count, seed=1)
        errors.append(relative_error(shap.alpha, exact))
        assert ((shap.alpha - exact).abs() <= 5 * shap.stderr + 1e-6).all()
        assert shap.local_accuracy_gap.max() < 1e-4  # every ordering telescopes to v(N) - v(empty)
    assert errors[2] < errors[0] / 4


def test_shap_is_deterministic_for_a_seed():
    model, x = seeded(VggNet), images(2)
    first = cam_lib.explain(model, x, "features", "shap", n_permutations=20, seed=5)
    assert torch.equal(first.alpha, cam_lib.explain(model, x, "features", "shap", n_permutations=20, seed=5).alpha)
    assert not torch.equal(first.alpha, cam_lib.explain(model, x, "features", "shap", n_permutations=20, seed=6).alpha)


@pytest.mark.parametrize("model_class, layer", [(GapNet, "features"), (VggNet, "features"), (VggNet, "features.2"),
                                               (WideVggNet, "features"), (SkipNet, "inner")])
@pytest.mark.parametrize("utility", ["logit", "rest"])
def test_running_sums_agree_with_head_evaluations(model_class, layer, utility):
    """The additive fast path (linear, then conv as first affine layer) against plain head evaluations."""
    model, x = seeded(model_class), images(2)
    explainer = cam_lib.Explainer(model, layer)
    assert explainer.split.additive is not None
    for method, options in [("exact", {}), ("ablation", {}), ("shap", {"n_permutations": 7})]:
        fast = explainer(x, method, utility=utility, **options)
        slow = cam_lib.explain(model, x, layer, method, utility=utility, trace=False, **options)
        torch.testing.assert_close(fast.alpha, slow.alpha, rtol=1e-4, atol=1e-5, msg=method)


def test_running_sums_step_by_step_equal_the_cumulative_sum():
    model, x = seeded(WideVggNet), images(2)
    game = cam_lib.Explainer(model, "features").game(x)
    orderings = cam_lib.shapley.random_orderings(3, game.num_players, seed=0)
    z0, terms, _ = game._additive
    for image in range(len(x)):
        running = terms[image][orderings].cumsum(1)  # the running sums as SHAP-CAM wrote them first
        first = torch.cat([torch.zeros_like(running[:, :1]), running], 1) + z0[image]
        torch.testing.assert_close(game._running_sums(image, orderings), first)


@pytest.mark.parametrize("additive", [True, False])
def test_null_players_get_zero_without_evaluation_and_the_others_their_marginals(additive):
    model, x = seeded(VggNet), images(2)
    with torch.no_grad():  # channels 0 and 5 die: their maps are ReLU(-1) = 0
        model.features[3].weight[[0, 5]] = 0.0
        model.features[3].bias[[0, 5]] = -1.0
    explainer = cam_lib.Explainer(model, "features")
    if not additive:
        explainer.split.additive = None
    game = explainer.game(x)
    orderings = cam_lib.shapley.random_orderings(4, game.num_players, seed=0)
    marginals = game.marginals(orderings)
    assert (marginals[:, :, [0, 5]] == 0).all() and (marginals[:, :, 1] != 0).all()
    rank = orderings.argsort(1)  # every coalition of every ordering, null players included, through v(S)
    masks = rank[:, None, :] < torch.arange(game.num_players + 1)[None, :, None]
    values = game.coalition_values(masks.flatten(0, 1)).view(len(x), len(orderings), -1)
    torch.testing.assert_close(marginals, values.diff(dim=2).gather(2, rank.expand(len(x), -1, -1)))


def test_a_logit_reads_one_row_of_the_readout():
    model = seeded(VggNet)
    additive = cam_lib.Explainer(model, "features").split.additive
    assert additive.readout is model.classifier[5]
    # the affine layer is the output
    assert cam_lib.Explainer(seeded(GapNet), "features").split.additive.readout is None
    z, shape = torch.randn(7, 32), torch.Size([32])
    with torch.no_grad():
        logits = additive.logits(z, (), shape)
        for target in range(CLASSES):
            torch.testing.assert_close(additive.target_logit(z, (), shape, target), logits[:, target])


def test_onednn_linears_compute_the_graphs_own_function():
    tail = cam_lib.Explainer(seeded(WideVggNet), "features").split.additive.tail
    z = torch.randn(9, 1100)
    with torch.no_grad():
        torch.testing.assert_close(OneDnnLinears(tail).run(z), tail(z))
    with torch.enable_grad():  # oneDNN's fused linear has no backward: the graph's own modules run instead
        z.requires_grad_()
        OneDnnLinears(tail).run(z).sum().backward()
    assert z.grad is not None


def test_batch_size_does_not_change_results():
    model, x = seeded(VggNet), images(2)
    small = cam_lib.explain(model, x, "features", "shap", n_permutations=9, batch_size=7, trace=False)
    large = cam_lib.explain(model, x, "features", "shap", n_permutations=9, batch_size=4096, trace=False)
    torch.testing.assert_close(small.alpha, large.alpha)


def captum_head(model):
    """The head as a plain module for Captum: pool, flatten, classifier (ReLUs not in place)."""
    import copy
    head = copy.deepcopy(torch.nn.Sequential(model.pool, torch.nn.Flatten(), model.classifier))
    for module in head.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return head


def test_lift_equals_captum_deeplift_where_captum_supports_the_head():
    from captum.attr import DeepLift
    model, x = seeded(VggNet), images(3)
    lift = cam_lib.explain(model, x, "features", "lift")
    A = lift.activations.clone().requires_grad_()
    theirs = DeepLift(captum_head(model)).attribute(A, baselines=torch.zeros_like(A), target=lift.target)
    torch.testing.assert_close(lift.alpha, theirs.sum((2, 3)), rtol=1e-4, atol=1e-5)


def test_captum_misses_functional_relus_but_lift_does_not():
    """Captum hooks ReLU modules only: on F.relu it silently falls back to gradients (no summation-to-delta)."""
    from captum.attr import DeepLift
    model, x = seeded(FunctionalNet), images(3)

    class FunctionalHead(torch.nn.Module):
        def forward(self, acts):
            return model.forward.__func__(_HeadOnly(model), acts)

    lift = cam_lib.explain(model, x, "features", "lift")
    A = lift.activations.clone().requires_grad_()
    theirs = DeepLift(FunctionalHead()).attribute(A, baselines=torch.zeros_like(A), target=lift.target).sum((2, 3))
    delta = lift.score - lift.baseline
    assert (lift.alpha.sum(1) - delta).abs().max() < 1e-5
    assert (theirs.sum(1) - delta).abs().max() > 1e-3


class _HeadOnly:
    """A stand-in whose ``features`` is the identity, so FunctionalNet.forward runs only the head."""

    def __init__(self, model):
        self.features, self.pool, self.classifier = (lambda a: a), model.pool, model.classifier

"""The entry point: clear errors for bad input, and the user's model given back unchanged."""
import pytest
import torch
from toy_models import GapNet, VggNet, images, seeded

import cam_lib


@pytest.fixture
def model():
    return seeded(VggNet)


@pytest.mark.parametrize("call, error, words", [
    (lambda m: cam_lib.explain(m, images(), "featurs"), ValueError, "Did you mean ['features'"),
    (lambda m: cam_lib.explain(m, images(), "classifier.0"), ValueError, "spatial map"),
    (lambda m: cam_lib.explain(m, images()[0], "features"), ValueError, "add a batch dimension"),
    (lambda m: cam_lib.explain(m, images().long(), "features"), TypeError, "float tensor"),
    (lambda m: cam_lib.explain(m, images().numpy(), "features"), TypeError, "torch.Tensor"),
    (lambda m: cam_lib.explain(m, images(), "features", target=5), ValueError, "5 classes"),
    (lambda m: cam_lib.explain(m, images(), "features", target=[0, 1]), ValueError, "3 ints"),
    (lambda m: cam_lib.explain(m, images(), "features", target=-1), ValueError, "out of range"),
    (lambda m: cam_lib.explain(m, images(), "features", target=1.5), TypeError, "integer"),
    (lambda m: cam_lib.explain(m, images(), "features", method="gradcam3"), ValueError, "unknown method"),
    (lambda m: cam_lib.explain(m, images(), "features", utility="prob"), ValueError, "unknown utility"),
    (lambda m: cam_lib.explain(m, images(), "features", method="gradcam", n_permutations=3), TypeError,
     "takes no option"),
    (lambda m: cam_lib.explain(m, images(), "features", method="cam"), ValueError, "global average pooling"),
    (lambda m: cam_lib.explain(m, images(), "features", method="shap", n_permutations=0), ValueError, "at least 1"),
    (lambda m: cam_lib.explain(m, images() * float("nan"), "features"), ValueError, "NaN"),
    (lambda m: cam_lib.explain(m, images(), 3), TypeError, "module name"),
    (lambda m: cam_lib.explain(m, images(), torch.nn.ReLU()), ValueError, "not a submodule"),
    (lambda m: cam_lib.explain("model", images(), "features"), TypeError, "nn.Module"),
    (lambda m: cam_lib.explain(m, images()[:0], "features"), ValueError, "empty batch"),
    (lambda m: cam_lib.explain(m, images()[:, :1], "features"), ValueError, "channel count"),
])
def test_bad_input_gets_a_clear_error(model, call, error, words):
    with pytest.raises(error, match=None) as info:
        call(model)
    assert words in str(info.value)


def test_exact_refuses_too_many_channels():
    with pytest.raises(ValueError, match="limit 20"):
        cam_lib.explain(seeded(GapNet, channels=21), images(1), "features", "exact")


def state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()],
            {k: v.clone() for k, v in model.state_dict().items()})


@pytest.mark.parametrize("method", sorted(cam_lib.METHODS))
@pytest.mark.parametrize("trace", [True, False])
def test_model_comes_back_unchanged(method, trace):
    model = seeded(GapNet).train()
    model.fc.requires_grad_(False)
    before = state(model)
    cam_lib.explain(model, images(2), "features", method, trace=trace) if (method != "cam" or trace) else None
    after = state(model)
    assert before[:3] == after[:3]
    assert all(torch.equal(before[3][k], after[3][k]) for k in before[3])
    assert all(p.grad is None for p in model.parameters())


def test_model_comes_back_unchanged_after_an_error():
    model = seeded(VggNet).train()
    before = state(model)
    for trace in (True, False):
        with pytest.raises(ValueError):
            cam_lib.explain(model, images(), "features", "cam", trace=trace)
        with pytest.raises(ValueError):
            cam_lib.explain(model, images(), "features", target=99, trace=trace)
    assert before[:3] == state(model)[:3]


def test_results_carry_no_graph():
    exp = cam_lib.explain(seeded(VggNet), images(2), "features", "shapleycam", utility="rest")
    for value in (exp.alpha, exp.cam, exp.saliency, exp.score, exp.baseline, exp.activations):
        assert not value.requires_grad and value.grad_fn is None


def test_saliency_of_a_constant_map_is_zeros():
    model = seeded(GapNet)
    with torch.no_grad():
        model.fc.weight.zero_()
    exp = cam_lib.explain(model, images(2), "features", "gradcam")
    assert torch.equal(exp.saliency, torch.zeros_like(exp.saliency))


def test_saliency_is_minmax_normalised():
    exp = cam_lib.explain(seeded(VggNet), images(3), "features", "lift")
    flat = exp.saliency.flatten(1)
    assert torch.allclose(flat.amax(1), torch.ones(3)) and torch.allclose(flat.amin(1), torch.zeros(3))
    assert exp.saliency.shape == (3, 16, 16)


def test_explanations_are_on_the_models_dtype_and_target_can_be_given():
    model, x = seeded(VggNet), images(3)
    exp = cam_lib.explain(model, x, "features", "gradcam", target=torch.tensor([0, 1, 2]))
    assert exp.target.tolist() == [0, 1, 2] and exp.alpha.dtype == torch.float32
    assert cam_lib.explain(model, x, "features", "gradcam", target=4).target.tolist() == [4, 4, 4]


def test_the_game_is_public_and_is_the_one_methods_play():
    from cam_lib.state import evaluating
    model, x = seeded(VggNet), images(3)
    explainer = cam_lib.Explainer(model, "features")
    game = explainer.game(x, target=1, utility="softmax")
    explanation = explainer(x, "exact" if game.num_players <= 12 else "lift", target=1, utility="softmax")
    with evaluating(model):
        full = game.coalition_values(torch.ones(1, game.num_players))[:, 0]
        empty = game.coalition_values(torch.zeros(1, game.num_players))[:, 0]
    torch.testing.assert_close(full, explanation.score)
    torch.testing.assert_close(empty, explanation.baseline)
    assert (game.target == 1).all()
    with pytest.raises(ValueError, match="unknown utility"):
        explainer.game(x, utility="probit")


def test_a_bad_input_does_not_switch_the_explainer_to_hooks():
    from cam_lib.split import GraphSplit
    model, x = seeded(VggNet), images(2)
    explainer = cam_lib.Explainer(model, "features")
    with pytest.raises(ValueError, match="channel count"):
        explainer(x[:, :1], "gradcam")
    explainer(x, "gradcam")
    assert isinstance(explainer.split, GraphSplit)


def test_registered_names_are_lower_case():
    from cam_lib.methods import CARDS, METHODS, register
    try:
        register("My-Grad")(METHODS["gradcam"])
        torch.testing.assert_close(cam_lib.explain(seeded(VggNet), images(1), "features", "MY-GRAD").alpha,
                                   cam_lib.explain(seeded(VggNet), images(1), "features", "gradcam").alpha)
    finally:
        METHODS.pop("my-grad", None)
        CARDS.pop("my-grad", None)
    with pytest.raises(ValueError, match="non-empty name"):
        register(" ")


class TupleNet(GapNet):
    """Returns ``(logits, {"embedding": pooled features})``: a structure, not one logits tensor."""

    def forward(self, x):
        pooled = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(pooled), {"embedding": pooled}


@pytest.mark.parametrize("trace", [True, False])
def test_a_callable_utility_explains_a_model_that_returns_a_structure(trace):
    import warnings
    model, x = seeded(TupleNet), images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the traced head must agree with the model leaf by leaf
        mine = cam_lib.explain(model, x, "features", "exact", utility=lambda out: out[0][:, 1], trace=trace)
        norm = cam_lib.explain(model, x, "features", "lift", utility=lambda out: out[1]["embedding"].norm(dim=1),
                               trace=trace)
    named = cam_lib.explain(seeded(GapNet), x, "features", "exact", target=1)
    torch.testing.assert_close(mine.alpha, named.alpha, rtol=1e-4, atol=1e-5)
    assert norm.relative_local_accuracy_gap.max() < 1e-4
    with pytest.raises(ValueError, match="need logits"):
        cam_lib.explain(model, x, "features", "lift", trace=trace)


def test_model_comes_back_unchanged_after_a_callable_fails():
    model = seeded(VggNet).train()
    before = state(model)
    for trace in (True, False):
        with pytest.raises(ValueError, match="one number per output row"):
            cam_lib.explain(model, images(), "features", "shapleycam", utility=lambda y: y[:, :2], trace=trace)
    after = state(model)
    assert before[:3] == after[:3] and all(torch.equal(before[3][k], after[3][k]) for k in before[3])


def test_relative_local_accuracy_gap_is_the_gap_over_the_explained_change():
    """``gap / |v(N) - v(empty)|``: near 0 for LIFT-CAM, large for Grad-CAM's slopes; 0 when nothing is explained
    and nothing is missing, inf when only something is missing."""
    model, x = seeded(VggNet), images(3)
    lift, gradcam = (cam_lib.explain(model, x, "features.4", m) for m in ("lift", "gradcam"))
    torch.testing.assert_close(gradcam.relative_local_accuracy_gap,
                               gradcam.local_accuracy_gap / (gradcam.score - gradcam.baseline).abs())
    assert lift.relative_local_accuracy_gap.max() < 1e-4 < gradcam.relative_local_accuracy_gap.min()
    flat = cam_lib.Explanation(**{**vars(lift), "alpha": torch.tensor([[0.0], [1.0], [0.0]]),
                                  "score": torch.tensor([2.0, 2.0, 5.0]), "baseline": torch.tensor([2.0, 2.0, 1.0])})
    assert flat.relative_local_accuracy_gap.tolist() == [0.0, float("inf"), 1.0]

"""Utilities: callables ``outputs -> [B]`` play the same game as the named ones, on any model output."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large
from toy_models import GapNet, VggNet, images, seeded

import cam_lib
from cam_lib import metrics, utility
from cam_lib.explain import _outputs_agree

SIZE = 48                      # deeplab's backbone has stride 16: 3 x 3 maps at the layer
LAYER = "classifier.0.project"  # ASPP's projection, 256 channels


def calibrated(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with batch-norm statistics of random images, so that the output depends on the input."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # one pass sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


@pytest.fixture(scope="module")
def deeplab():
    torch.manual_seed(0)
    return calibrated(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=True, num_classes=3))


@pytest.fixture(scope="module")
def scenes():
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


class Regressor(nn.Module):
    """A small CNN with one output (a regression, or a binary model's logit); a nonlinear head after ``features``."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.head(self.features(x))


def region() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE)
    mask[8:40, 12:36] = 1
    return mask


def relative_gap(explanation) -> float:
    change = (explanation.score - explanation.baseline).abs()
    assert (change > 1e-3).all(), "a degenerate game (v(N) = v(empty)) would make local accuracy trivial"
    return explanation.relative_local_accuracy_gap.max().item()


@pytest.mark.parametrize("trace", [True, False])
def test_segmentation_game_is_locally_accurate_for_lift_and_shap(deeplab, scenes, trace):
    u = utility.segmentation(1, region())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fx head, with a dict output and an aux branch, must pass the check
        explainer = cam_lib.Explainer(deeplab, LAYER, trace=trace)
        lift = explainer(scenes, "lift", utility=u)
        shap = explainer(scenes[:1], "shap", utility=u, n_permutations=1)  # hooks: 257 passes of the network
    assert relative_gap(lift) < 1e-4
    assert relative_gap(shap) < 1e-4  # each ordering's marginals sum to v(N) - v(empty)
    with torch.no_grad():
        logits = deeplab(scenes)["out"][:, 1]
    torch.testing.assert_close(lift.score, (logits * region()).sum((1, 2)))
    assert lift.utility == "segmentation(class 1, mask)" and lift.target.tolist() == [-1, -1]


def test_segmentation_of_predicted_pixels_uses_each_images_own_region(deeplab, scenes):
    with torch.no_grad():
        outputs = deeplab(scenes)
    predicted = outputs["out"].argmax(1)
    assert (predicted[0] != predicted[1]).any(), "the two scenes should have different predicted regions"
    c = int(predicted.flatten().mode().values)
    exp = cam_lib.explain(deeplab, scenes, LAYER, "lift", utility=utility.segmentation(c, outputs=outputs))
    expected = (outputs["out"][:, c] * (predicted == c)).sum((1, 2))
    torch.testing.assert_close(exp.score, expected)
    assert relative_gap(exp) < 1e-4


def test_a_utility_of_an_output_the_layer_cannot_reach_gives_zero(deeplab, scenes):
    def aux_only(outputs):  # the auxiliary output branches off before the layer
        return outputs["aux"][:, 0].flatten(1).sum(1)
    exp = cam_lib.explain(deeplab, scenes, LAYER, "lift", utility=aux_only)
    torch.testing.assert_close(exp.score, exp.baseline)
    assert exp.alpha.abs().max() == 0


def test_deeplab_comes_back_unchanged_also_after_an_error(deeplab, scenes):
    before = {k: v.clone() for k, v in deeplab.state_dict().items()}
    deeplab.train()
    with pytest.raises(ValueError, match=r"shape \[B\] = \[2\]"):
        cam_lib.explain(deeplab, scenes, LAYER, "gradcam", utility=lambda outputs: outputs["out"][:, :1, 0, 0])
    cam_lib.explain(deeplab, scenes, LAYER, "gradcam", utility=utility.segmentation(0, region()))
    assert all(module.training for module in deeplab.modules())
    assert all(torch.equal(before[k], v) for k, v in deeplab.state_dict().items())
    assert not any(module._forward_hooks for module in deeplab.modules())
    deeplab.eval()


@pytest.mark.parametrize("trace", [True, False])
def test_regression_game_exact_and_lift_are_locally_accurate(trace):
    model, x = seeded(Regressor), images(3)
    u = utility.output_unit()
    exact = cam_lib.explain(model, x, "features", "exact", utility=u, trace=trace)
    lift = cam_lib.explain(model, x, "features", "lift", utility=u, trace=trace)
    assert relative_gap(exact) < 1e-5 and relative_gap(lift) < 1e-4
    with torch.no_grad():
        torch.testing.assert_close(exact.score, model(x)[:, 0])
    assert exact.utility == "output 0"


@pytest.mark.parametrize("method", ["lift", "gradcam", "shapleycam", "exact", "shap", "ablation", "scorecam",
                                    "smoothgradcam++", "sscam", "iscam", "layercam"])
def test_a_callable_equal_to_logit_gives_the_same_alpha(method):
    model, x = seeded(VggNet), images(2)
    options = {"n_permutations": 3} if method == "shap" else {"n_samples": 2} if method in SAMPLED else {}
    named = cam_lib.explain(model, x, "features", method, target=2, utility="logit", **options)
    mine = cam_lib.explain(model, x, "features", method, utility=lambda y: y[:, 2], **options)
    assert mine.alpha.abs().max() > 0
    torch.testing.assert_close(mine.alpha, named.alpha, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mine.score - mine.baseline, named.score - named.baseline)


SAMPLED = {"smoothgradcam++", "sscam", "iscam"}


class DictGapNet(GapNet):
    """GAP + linear, the logits returned in a dict: the additive fast path must finish the head into the dict."""

    def forward(self, x):
        return {"logits": self.fc(torch.flatten(self.pool(self.features(x)), 1))}


@pytest.mark.parametrize("method", ["exact", "shap", "ablation"])
def test_the_additive_fast_path_serves_a_dict_output(method):
    model, x = seeded(DictGapNet), images(2)
    explainer = cam_lib.Explainer(model, "features")
    assert explainer.split.additive is not None and not explainer.split.additive.is_output
    options = {"n_permutations": 3} if method == "shap" else {}
    mine = explainer(x, method, utility=lambda outputs: outputs["logits"][:, 1], **options)
    named = cam_lib.explain(seeded(GapNet), x, "features", method, target=1, **options)
    torch.testing.assert_close(mine.alpha, named.alpha, rtol=1e-4, atol=1e-6)


def test_shapleycam_uses_the_callables_hessian():
    model, x = seeded(VggNet), images(2)
    named = cam_lib.explain(model, x, "features", "shapleycam", target=1, utility="rest")
    def rest(y):
        return y[:, 1] + y.log_softmax(1)[:, 1]
    mine = cam_lib.explain(model, x, "features", "shapleycam", utility=rest)
    first_order = cam_lib.explain(model, x, "features", "gradcam", utility=rest)
    torch.testing.assert_close(mine.alpha, named.alpha, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(mine.alpha, first_order.alpha)  # the second-order term is there


def test_finer_utility_matches_a_hand_computation():
    logits = torch.tensor([[4.0, 3.5, -1.0, 3.9, 0.0], [0.0, 1.0, 2.0, 3.0, 2.5]])
    u = utility.finer(logits, k=2, gamma=0.5)
    # image 0: target 0 (4.0), nearest logits 3.9 (class 3) and 3.5 (class 1); image 1: target 3, then 4 and 2
    assert utility.similar_classes(logits, torch.tensor([0, 3]), k=2).tolist() == [[3, 1], [4, 2]]
    y = torch.randn(4, 5)
    rows = torch.tensor([0, 1, 1, 0])
    expected = []
    for row, image in zip(y, rows.tolist(), strict=True):
        target, references = [(0, [3, 1]), (3, [4, 2])][image]
        p = row.softmax(0)[references]
        expected.append((p * (row[target] - 0.5 * row[references])).sum() / p.sum())
    torch.testing.assert_close(u(y, rows), torch.stack(expected))
    uniform = utility.finer(logits, k=2, gamma=1.0, weighting="uniform")
    torch.testing.assert_close(uniform(y, rows)[:2], torch.stack([y[0, 0] - y[0, [3, 1]].mean(),
                                                                   y[1, 3] - y[1, [4, 2]].mean()]))


def test_finer_game_is_locally_accurate():
    model, x = seeded(VggNet), images(2)
    with torch.no_grad():
        logits = model.eval()(x)
    exp = cam_lib.explain(model, x, "features", "exact", utility=utility.finer(logits))
    assert relative_gap(exp) < 1e-5 and exp.utility == "finer(k=3, gamma=1)"


def test_cosine_utility_scores_the_embedding_against_a_reference():
    model, x = seeded(VggNet), images(3)
    reference = torch.randn(5)
    exp = cam_lib.explain(model, x, "features", "lift", utility=utility.cosine_similarity(reference))
    with torch.no_grad():
        torch.testing.assert_close(exp.score, F.cosine_similarity(model(x), reference[None].expand(3, -1)))
    assert relative_gap(exp) < 1e-4 and exp.score.abs().max() <= 1


def test_callables_are_named_readably():
    model, x = seeded(VggNet), images(1)

    def margin(y):
        return y[:, 0] - y[:, 1]

    class Scorer:
        name = "class 0 score"

        def __call__(self, y):
            return y[:, 0]
    assert cam_lib.explain(model, x, "features", "gradcam", utility=margin).utility == "margin"
    assert cam_lib.explain(model, x, "features", "gradcam", utility=Scorer()).utility == "class 0 score"
    assert cam_lib.explain(model, x, "features", "gradcam", utility=lambda y: y[:, 0]).utility == "<lambda>"


@pytest.mark.parametrize("bad, words", [
    (lambda y: y[:, :1], "got shape [2, 1]. Select one number per row"),
    (lambda y: y.sum(), "got shape []. Do not reduce over the batch"),
    (lambda y: float(y[0, 0]), "got float"),
])
def test_a_callable_of_the_wrong_shape_gets_a_clear_error(bad, words):
    with pytest.raises(ValueError) as info:
        cam_lib.explain(seeded(VggNet), images(2), "features", "lift", utility=bad)
    assert "must return one number per output row, a tensor of shape [B] = [2]" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("call, words", [
    (lambda m, d: cam_lib.explain(m, images(2), "features", utility=lambda y: y[:, 0], target=1), "drop target="),
    (lambda m, d: cam_lib.explain(m, images(2), "features", "cam", utility=lambda y: y[:, 0]), "names no class"),
    (lambda m, d: cam_lib.explain(d, torch.zeros(1, 3, SIZE, SIZE), LAYER), "need logits [B, classes]"),
    (lambda m, d: cam_lib.explain(m, images(2), "features", utility=3), "or a function outputs -> [B]"),
    (lambda m, d: utility.segmentation(0), "exactly one of mask="),
])
def test_what_a_callable_cannot_offer_is_said(deeplab, call, words):
    with pytest.raises((ValueError, TypeError)) as info:
        call(seeded(VggNet), deeplab)
    assert words in str(info.value)


def test_metrics_score_the_callable_and_refuse_class_probabilities():
    model, x = seeded(Regressor), images(3)
    u = utility.output_unit()
    exp = cam_lib.explain(model, x, "features", "lift", utility=u)
    table = metrics.evaluate(model, x, exp, ["insertion", "deletion", "ic", "channel_correlation", "coherency"])
    assert set(table.metric) == {"insertion", "deletion", "ic", "channel_correlation", "coherency"}
    insertion, deletion = metrics.insertion_deletion_curves(model, x, exp.saliency, exp.target, steps=5,
                                                            utility=utility.CallableUtility(u))
    with torch.no_grad():
        torch.testing.assert_close(insertion[:, -1], model(x)[:, 0])        # every pixel back: u(f(x))
        torch.testing.assert_close(deletion[:, -1], model(x * 0)[:, 0])     # every pixel gone: u(f(0))
    bare = metrics.evaluate(model, x, exp.saliency, ["deletion"], utility=u)
    assert torch.allclose(torch.tensor(bare.value.values), torch.tensor(table[table.metric == "deletion"].value.values))
    with pytest.raises(ValueError, match=r"need class probabilities p_c"):
        metrics.evaluate(model, x, exp, ["road"])
    def negative(y):
        return -(y[:, 0] ** 2) - 1
    with pytest.raises(ValueError, match="must be positive"):
        metrics.evaluate(model, x, cam_lib.explain(model, x, "features", "lift", utility=negative), ["ad"])


def test_outputs_are_compared_leaf_by_leaf():
    direct = {"out": torch.ones(2, 3), "aux": torch.full((2, 3), 100.0)}
    assert _outputs_agree({"out": torch.ones(2, 3) + 1e-3, "aux": direct["aux"]}, direct)[0]  # within 1e-4 of 100
    assert not _outputs_agree({"out": torch.ones(2, 3) + 0.1, "aux": direct["aux"]}, direct)[0]
    assert not _outputs_agree({"main": direct["out"], "aux": direct["aux"]}, direct)[0]
    assert not _outputs_agree((direct["out"],), (direct["out"], direct["aux"]))[0]

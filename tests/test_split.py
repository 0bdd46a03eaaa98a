"""Cutting networks at a layer: torch.fx on torchvision models and hand-written ones, hooks as fallback."""
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from toy_models import GapNet, TwoInputNet, Untraceable, VggNet, images, seeded

import cam_lib
from cam_lib.split import GraphSplit, HookSplit

TORCHVISION = {  # model -> (explained layer, whether the head is additive up to its first affine layer)
    "resnet18": ("layer4", True), "resnet50": ("layer4", True), "vgg11": ("features.19", True),
    "vgg16": ("features.29", True), "densenet121": ("features.norm5", True),
    "mobilenet_v2": ("features.18", True), "efficientnet_b0": ("features.8", True),
}


@pytest.fixture(scope="module")
def picture():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_models_are_cut_by_fx(name, picture):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    layer, additive = TORCHVISION[name]
    explainer = cam_lib.Explainer(model, layer)
    assert isinstance(explainer.split, GraphSplit)
    assert (explainer.split.additive is not None) == additive
    lift = explainer(picture, "lift")
    assert isinstance(explainer.split, GraphSplit)  # the traced head reproduced the model's logits
    assert lift.local_accuracy_gap.item() < 1e-4 * (1 + lift.score.abs().item())
    hooks = cam_lib.explain(model, picture, layer, "lift", trace=False)
    torch.testing.assert_close(lift.alpha, hooks.alpha, rtol=1e-4, atol=1e-5)
    fast = explainer(picture, "shap", n_permutations=2)
    explainer.split.additive = None  # plain head evaluations of every coalition
    torch.testing.assert_close(fast.alpha, explainer(picture, "shap", n_permutations=2).alpha, rtol=1e-3, atol=1e-4)


def test_untraceable_models_fall_back_to_hooks_and_say_so():
    model, x = seeded(Untraceable), images(2)
    with pytest.warns(UserWarning, match="forward hooks because torch.fx cannot trace it"):
        explainer = cam_lib.Explainer(model, "features")
    assert isinstance(explainer.split, HookSplit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(cam_lib.Explainer(model, "features", trace=False).split, HookSplit)  # asked: no warning
    reference = cam_lib.explain(seeded(GapNet), x, "features", "lift")
    torch.testing.assert_close(explainer(x, "lift").alpha, reference.alpha)


def test_layer_can_be_given_as_a_module():
    model, x = seeded(VggNet), images(2)
    by_module = cam_lib.explain(model, x, model.features, "gradcam")
    assert by_module.layer == "features"
    torch.testing.assert_close(by_module.alpha, cam_lib.explain(model, x, "features", "gradcam").alpha)


@pytest.mark.parametrize("trace", [True, False])
def test_extra_inputs_are_held_fixed(trace):
    model, x = seeded(TwoInputNet), images(3)
    question = torch.randint(0, 7, (3, 4), generator=torch.Generator().manual_seed(0))
    exp = cam_lib.explain(model, x, "features", "lift", extra_inputs=(question,), trace=trace)
    torch.testing.assert_close(exp.score, model(x, question)[torch.arange(3), exp.target])
    assert exp.local_accuracy_gap.max() < 1e-5
    shap = cam_lib.explain(model, x, "features", "shap", extra_inputs=(question,), n_permutations=5, trace=trace)
    assert shap.local_accuracy_gap.max() < 1e-5


def test_spatial_layers_lists_candidates():
    names = dict(cam_lib.spatial_layers(seeded(VggNet), images(1)))
    assert names["features"] == (1, 12, 8, 8) and "classifier" not in names


def test_the_trace_check_is_relative_to_the_outputs_scale(monkeypatch):
    """Kernels that differ with the batch size move large logits by ~1e-5: that is agreement, not a bad trace."""
    model, x = seeded(VggNet), images(2)
    with torch.no_grad():
        model.classifier[-1].weight.mul_(1e4)  # logits of magnitude ~1e3 and more
    explainer = cam_lib.Explainer(model, "features")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explainer(x, "gradcam")
    assert isinstance(explainer.split, GraphSplit)
    broken = cam_lib.Explainer(model, "features")
    head = broken.split.__call__

    def off_by_one(images, extra):  # a traced head that is wrong by far more than rounding
        cut = head(images, extra)
        cut.head = (lambda original: lambda a, rows=None: original(a, rows) + 1.0)(cut.head)
        return cut
    monkeypatch.setattr(broken, "split", type("Wrong", (), {"__call__": staticmethod(off_by_one)})())
    with pytest.warns(UserWarning, match="differs from the model by"):
        broken(x, "gradcam")
    assert isinstance(broken.split, HookSplit)


class DropoutNet(GapNet):
    """Functional dropout that reads ``self.training``, which torch.fx records as a constant."""

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(F.dropout(x, 0.5, self.training))), 1))


def test_a_model_in_training_mode_is_traced_as_in_eval_mode():
    model, x = seeded(DropoutNet).train(), images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trace with dropout on would differ from the model and fall back
        explainer = cam_lib.Explainer(model, "features")
        lift = explainer(x, "lift")
    assert isinstance(explainer.split, GraphSplit) and model.training
    torch.testing.assert_close(lift.score, model.eval()(x)[torch.arange(2), lift.target])

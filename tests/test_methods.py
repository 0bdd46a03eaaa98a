"""Each method against its formula written independently here (hooks on the whole model, not cam_lib's
split), and against the grad-cam package where it implements the same thing."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cam_lib
from toy_models import GapNet, SkipNet, VggNet, images, seeded


def utility_of(name, logits, target):
    """The three utilities, written from SCIENCE.md again."""
    chosen = logits[torch.arange(len(target)), target]
    if name == "logit":
        return chosen
    if name == "softmax":
        return torch.exp(chosen - torch.logsumexp(logits, 1))
    return chosen + chosen - torch.logsumexp(logits, 1)


def with_layer_output(model, layer, x, replacement=None):
    """Run the whole model, capturing (or replacing) the layer's output with a forward hook."""
    store = {}

    def hook(module, inputs, output):
        store["A"] = output if replacement is None else replacement
        return store["A"]

    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, store["A"]


def reference_gradient(model, x, target, utility="logit", layer="features"):
    activations = with_layer_output(model, layer, x)[1].detach().requires_grad_()
    logits, _ = with_layer_output(model, layer, x, activations)
    grad, = torch.autograd.grad(utility_of(utility, logits, target).sum(), activations)
    return activations.detach(), grad


MODELS = {"linear head": GapNet, "nonlinear head": VggNet}


@pytest.fixture(params=list(MODELS))
def setup(request):
    model = seeded(MODELS[request.param])
    x = images()
    target = model(x).argmax(1)
    return model, x, target


def test_default_target_is_the_prediction(setup):
    model, x, target = setup
    assert torch.equal(cam_lib.explain(model, x, "features", "gradcam").target, target)


@pytest.mark.parametrize("utility", ["logit", "softmax", "rest"])
def test_gradient_methods(setup, utility):
    model, x, target = setup
    A, g = reference_gradient(model, x, target, utility)
    expected = {
        "gradcam": g.mean((2, 3)),
        "gradcam++": ((g ** 2 / (2 * g ** 2 + A.sum((2, 3), keepdim=True) * g ** 3)).nan_to_num(0, 0, 0)
                      * g.clamp(min=0)).sum((2, 3)),
        "xgradcam": (A * g).sum((2, 3)) / A.sum((2, 3)).where(A.sum((2, 3)) != 0, torch.inf),
        "hirescam": (g * A).sum((2, 3)),
    }
    for method, alpha in expected.items():
        exp = cam_lib.explain(model, x, "features", method, utility=utility)
        torch.testing.assert_close(exp.alpha, alpha, rtol=1e-4, atol=1e-6, msg=method)
    hires = cam_lib.explain(model, x, "features", "hirescam", utility=utility)
    torch.testing.assert_close(hires.cam, (g * A).sum(1).relu(), rtol=1e-4, atol=1e-6)


def test_cam_is_the_fc_weight_and_equals_gradcam_times_area():
    model, x = seeded(GapNet), images()
    exp = cam_lib.explain(model, x, "features", "cam")
    torch.testing.assert_close(exp.alpha, model.fc.weight[exp.target])
    gradcam = cam_lib.explain(model, x, "features", "gradcam")
    torch.testing.assert_close(exp.saliency, gradcam.saliency, rtol=1e-4, atol=1e-5)


def test_ablation_is_the_one_channel_drop(setup):
    model, x, target = setup
    A = with_layer_output(model, "features", x)[1]
    score = model(x)[torch.arange(len(x)), target]
    expected = torch.zeros(len(x), A.shape[1])
    for k in range(A.shape[1]):
        ablated = A.clone()
        ablated[:, k] = 0
        logits, _ = with_layer_output(model, "features", x, ablated)
        expected[:, k] = (score - logits[torch.arange(len(x)), target]) / score
    torch.testing.assert_close(cam_lib.explain(model, x, "features", "ablation").alpha, expected, rtol=1e-4, atol=1e-5)


def test_scorecam_masks_the_input_with_each_normalised_map(setup):
    model, x, target = setup
    A = with_layer_output(model, "features", x)[1]
    up = F.interpolate(A, size=x.shape[-2:], mode="bilinear", align_corners=False)
    low, high = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    masks = torch.where(high > low, (up - low) / (high - low).clamp(min=1e-30), 0.0)
    expected = torch.stack([utility_of("softmax", model(x[b] * masks[b][:, None]), target[b].expand(A.shape[1]))
                            for b in range(len(x))])
    exp = cam_lib.explain(model, x, "features", "scorecam", utility="softmax", masks_per_call=5)
    torch.testing.assert_close(exp.alpha, expected, rtol=1e-4, atol=1e-6)
    one_call = cam_lib.explain(model, x, "features", "scorecam", utility="softmax", masks_per_call=A.shape[1])
    torch.testing.assert_close(one_call.alpha, exp.alpha, rtol=1e-5, atol=1e-7)


def test_shapleycam_uses_a_true_hessian_vector_product():
    model, x = seeded(VggNet).double(), images().double()
    target = model(x).argmax(1)
    A = with_layer_output(model, "features", x)[1].detach()

    def value(acts):
        return utility_of("rest", with_layer_output(model, "features", x, acts)[0], target).sum()

    _, hvp = torch.autograd.functional.hvp(value, A, A)
    g = torch.autograd.functional.jacobian(value, A)
    exp = cam_lib.explain(model, x, "features", "shapleycam", utility="rest")
    torch.testing.assert_close(exp.alpha, (g - hvp / 2).mean((2, 3)))
    # the HVP itself against central finite differences of the gradient along A
    step = 1e-4
    finite = (torch.autograd.functional.jacobian(value, A * (1 + step))
              - torch.autograd.functional.jacobian(value, A * (1 - step))) / (2 * step)
    torch.testing.assert_close(hvp, finite, rtol=1e-5, atol=1e-8)
    assert hvp.abs().max() > 1e-6  # ReST makes the Hessian non-zero (with logits it is exactly 0)


def test_shapleycam_equals_gradcam_for_logits_on_a_piecewise_linear_head():
    model, x = seeded(VggNet).double(), images().double()
    gradcam = cam_lib.explain(model, x, "features", "gradcam")
    assert torch.equal(cam_lib.explain(model, x, "features", "shapleycam").alpha, gradcam.alpha)
    rest = cam_lib.explain(model, x, "features", "shapleycam", utility="rest")
    rest_gradcam = cam_lib.explain(model, x, "features", "gradcam", utility="rest")
    assert (rest.alpha - rest_gradcam.alpha).abs().max() > 1e-9  # far above float64 noise


def test_shapleycam_variants_are_element_wise():
    model, x = seeded(VggNet), images()
    h = cam_lib.explain(model, x, "features", "shapleycam-h", utility="rest")
    e = cam_lib.explain(model, x, "features", "shapleycam-e", utility="rest")
    gradient = cam_lib.explain(model, x, "features", "shapleycam", utility="rest")
    weight_map = (gradient.alpha[:, :, None, None] * 0 + 1)  # shapes only
    assert h.cam.shape == e.cam.shape == weight_map.shape[:1] + h.cam.shape[1:]
    assert (e.alpha >= 0).all() and (e.alpha >= h.alpha - 1e-6).all()  # E keeps only positive terms


def grad_cam_package_map(cam_class, model, x, target, target_class):
    """The grad-cam package's map before its own scaling, captured from get_cam_image."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget
    explainer = cam_class(model=model, target_layers=[model.features])
    captured = []
    original = explainer.get_cam_image

    def capture(*args, **kwargs):
        captured.append(original(*args, **kwargs))
        return captured[-1]

    explainer.get_cam_image = capture
    wrap = ClassifierOutputReST if target_class == "rest" else ClassifierOutputTarget
    explainer(x, targets=[wrap(int(c)) for c in target])
    return torch.from_numpy(np.maximum(captured[0], 0)).float()


@pytest.mark.parametrize("name, utility", [("gradcam", "logit"), ("gradcam++", "logit"), ("xgradcam", "logit"),
                                           ("hirescam", "logit"), ("shapleycam", "rest")])
def test_agrees_with_the_grad_cam_package(name, utility):
    import pytorch_grad_cam as package
    classes = {"gradcam": package.GradCAM, "gradcam++": package.GradCAMPlusPlus, "xgradcam": package.XGradCAM,
               "hirescam": package.HiResCAM, "shapleycam": package.ShapleyCAM}
    model, x = seeded(VggNet), images()
    with torch.no_grad():  # large gradients, so the package's eps = 1e-6 in Grad-CAM++ is negligible
        model.classifier[5].weight *= 100
    exp = cam_lib.explain(model, x, "features", name, utility=utility)
    theirs = grad_cam_package_map(classes[name], model, x, exp.target, utility)
    torch.testing.assert_close(exp.cam, theirs, rtol=2e-3, atol=1e-5)


def test_skip_values_are_held_fixed():
    model, x = seeded(SkipNet), images()
    A, g = reference_gradient(model, x, model(x).argmax(1), layer="inner")
    torch.testing.assert_close(cam_lib.explain(model, x, "inner", "gradcam").alpha, g.mean((2, 3)))
    exp = cam_lib.explain(model, x, "inner", "ablation")
    assert exp.alpha.shape == (3, 8)


def test_every_registered_method_runs_on_both_paths():
    model, x = seeded(VggNet), images(2)
    for method in set(cam_lib.METHODS) - {"cam"}:  # CAM needs GAP + linear: tested on GapNet
        graph = cam_lib.explain(model, x, "features", method)
        hooks = cam_lib.explain(model, x, "features", method, trace=False)
        assert graph.saliency.shape == (2, 16, 16) and graph.saliency.min() >= 0 and graph.saliency.max() <= 1
        torch.testing.assert_close(graph.alpha, hooks.alpha, rtol=1e-4, atol=1e-5, msg=method)

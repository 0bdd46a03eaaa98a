"""Each method against its formula written independently here (hooks on the whole model, not cam_lib's
split), and against the grad-cam package where it implements the same thing."""
import grad_cam_reference
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_models import GapNet, SkipNet, VggNet, images, seeded

import cam_lib


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


def grad_cam_package_map(cam_class, model, x, target, target_class, layer=None, relu=True):
    """The grad-cam package's map before its own scaling, captured from get_cam_image."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget
    wrap = ClassifierOutputReST if target_class == "rest" else ClassifierOutputTarget
    _, raw = grad_cam_reference.run(cam_class, model, x, [wrap(int(c)) for c in target],
                                    model.features if layer is None else layer)
    return torch.from_numpy(np.maximum(raw, 0) if relu else raw).float()


@pytest.mark.parametrize("name, utility", [("gradcam", "logit"), ("gradcam++", "logit"), ("xgradcam", "logit"),
                                           ("hirescam", "logit"), ("shapleycam", "rest"), ("layercam", "logit"),
                                           ("gradcam-elementwise", "logit")])
def test_agrees_with_the_grad_cam_package(name, utility):
    import pytorch_grad_cam as package
    classes = {"gradcam": package.GradCAM, "gradcam++": package.GradCAMPlusPlus, "xgradcam": package.XGradCAM,
               "hirescam": package.HiResCAM, "shapleycam": package.ShapleyCAM, "layercam": package.LayerCAM,
               "gradcam-elementwise": package.GradCAMElementWise}
    model, x = seeded(VggNet), images()
    with torch.no_grad():  # large gradients, so the package's eps = 1e-6 in Grad-CAM++ is negligible
        model.classifier[5].weight *= 100
    exp = cam_lib.explain(model, x, "features", name, utility=utility)
    theirs = grad_cam_package_map(classes[name], model, x, exp.target, utility)
    torch.testing.assert_close(exp.cam, theirs, rtol=2e-3, atol=1e-5)


def test_skip_values_are_held_fixed():
    model, x = seeded(SkipNet), images()
    _, g = reference_gradient(model, x, model(x).argmax(1), layer="inner")
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


# The methods the peer libraries have (issue 14): element-wise, principal-component, smoothed and integrated.

class FullResNet(torch.nn.Module):
    """The explained layer keeps the input's 16x16: no upsampling, so Score-CAM's masks are the same whichever
    of normalise-then-upsample (TorchCAM) or upsample-then-normalise (cam_lib, Wang et al.) a library does."""

    def __init__(self, channels: int = 6):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, channels, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Conv2d(channels, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                        torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 5))

    def forward(self, x):
        return self.head(self.features(x))


def resnet18():
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.get_model("resnet18", weights=None, num_classes=7).eval()


def test_element_wise_methods_follow_their_formulas(setup):
    model, x, target = setup
    A, g = reference_gradient(model, x, target)
    for method, terms in {"layercam": g.clamp(min=0) * A, "gradcam-elementwise": (g * A).clamp(min=0)}.items():
        exp = cam_lib.explain(model, x, "features", method)
        torch.testing.assert_close(exp.cam, terms.sum(1).relu(), rtol=1e-4, atol=1e-6, msg=method)
        torch.testing.assert_close(exp.alpha, terms.sum((2, 3)), rtol=1e-4, atol=1e-6, msg=method)
    hires = cam_lib.explain(model, x, "features", "hirescam")
    layer = cam_lib.explain(model, x, "features", "layercam")
    assert (layer.alpha >= hires.alpha - 1e-6).all()  # dropping negative gradients only adds (A >= 0 here)


@pytest.mark.parametrize("name", ["layercam", "eigencam"])
def test_agrees_with_the_grad_cam_package_on_a_torchvision_resnet(name):
    """LayerCAM exactly; EigenCAM up to the sign of the singular vector, which LAPACK leaves arbitrary."""
    import pytorch_grad_cam as package
    model, x = resnet18(), images(2, seed=1).repeat(1, 1, 4, 4)  # 64x64: layer3 is 4x4
    exp = cam_lib.explain(model, x, "layer3", name)
    cls = {"layercam": package.LayerCAM, "eigencam": package.EigenCAM}[name]
    theirs = grad_cam_package_map(cls, model, x, exp.target, "logit", layer=model.layer3, relu=False)
    for mine, raw in zip(exp.cam, theirs):
        gap = min((mine - (sign * raw).relu()).abs().max() for sign in ((1,) if name == "layercam" else (1, -1)))
        assert gap <= 2e-3 * raw.abs().max(), (name, gap)


@pytest.mark.parametrize("name, package_class", [("eigencam", "EigenCAM"), ("eigengradcam", "EigenGradCAM")])
def test_eigen_methods_agree_with_the_grad_cam_package_up_to_sign(name, package_class):
    import pytorch_grad_cam as package
    model, x = seeded(VggNet), images()
    exp = cam_lib.explain(model, x, "features", name)
    raw = grad_cam_package_map(getattr(package, package_class), model, x, exp.target, "logit", relu=False)
    for mine, theirs in zip(exp.cam, raw):
        gap = min((mine - (sign * theirs).relu()).abs().max() for sign in (1, -1))
        assert gap <= 1e-4 * theirs.abs().max(), (name, gap)


def test_eigencam_ignores_the_target_and_has_no_coefficients():
    model, x = seeded(VggNet), images()
    first, other = (cam_lib.explain(model, x, "features", "eigencam", target=c) for c in (0, 3))
    assert torch.equal(first.cam, other.cam) and first.cam.amax() > 0
    assert first.alpha.abs().max() < 1e-4 * first.activations.abs().max()  # each channel's terms sum to 0
    torch.testing.assert_close(first.local_accuracy_gap, (first.score - first.baseline).abs(), atol=1e-4, rtol=1e-4)
    gradient_based = [cam_lib.explain(model, x, "features", "eigengradcam", target=c).cam for c in (0, 3)]
    assert not torch.allclose(*gradient_based)


def test_layercam_agrees_with_torchcam_on_a_torchvision_resnet():
    from torchcam.methods import LayerCAM
    model, x = resnet18(), images(2, seed=1).repeat(1, 1, 4, 4)
    exp = cam_lib.explain(model, x, "layer3", "layercam")
    with LayerCAM(model, "layer3", input_shape=(3, 64, 64)) as extractor:
        theirs = extractor(class_idx=exp.target.tolist(), scores=model(x), normalized=False)[0]
    torch.testing.assert_close(exp.cam, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


def smooth_reference(model, x, target, n_samples, sigma, seed):
    """Smooth Grad-CAM++ written again: hooks on the whole model, the noise drawn image batch by batch."""
    generator = torch.Generator().manual_seed(seed)
    A = with_layer_output(model, "features", x)[1].detach()
    grads = torch.stack([reference_gradient(model, x + sigma * torch.randn(x.shape, generator=generator), target)[1]
                         for _ in range(n_samples)])
    square, cube = (grads ** 2).mean(0), (grads ** 3).mean(0)
    a = (square / (2 * square + A.sum((2, 3), keepdim=True) * cube)).nan_to_num(0, 0, 0)
    return (a * grads.mean(0).clamp(min=0)).sum((2, 3))


def test_smooth_gradcam_plus_plus(setup):
    model, x, target = setup
    exp = cam_lib.explain(model, x, "features", "smoothgradcam++", n_samples=5, sigma=0.4, seed=3)
    torch.testing.assert_close(exp.alpha, smooth_reference(model, x, target, 5, 0.4, 3), rtol=1e-4, atol=1e-6)
    again = cam_lib.explain(model, x, "features", "smoothgradcam++", n_samples=5, sigma=0.4, seed=3)
    other = cam_lib.explain(model, x, "features", "smoothgradcam++", n_samples=5, sigma=0.4, seed=4)
    assert torch.equal(exp.alpha, again.alpha)
    noiseless = cam_lib.explain(model, x, "features", "smoothgradcam++", n_samples=2, sigma=0.0)
    plain = cam_lib.explain(model, x, "features", "gradcam++")
    torch.testing.assert_close(noiseless.alpha, plain.alpha, rtol=1e-5, atol=1e-7)
    if isinstance(model, GapNet):  # a linear head's gradient is the same for every input: noise changes nothing
        torch.testing.assert_close(other.alpha, plain.alpha, rtol=1e-4, atol=1e-6)
    else:
        assert (other.alpha - exp.alpha).abs().max() > 1e-3 * exp.alpha.abs().max()


def score_reference(model, x, target, scales, noise=None):
    """u(f(x * (scale * s(up(A_k)) + noise))) averaged over the scales (and noise draws), image by image."""
    A = with_layer_output(model, "features", x)[1]
    up = F.interpolate(A, size=x.shape[-2:], mode="bilinear", align_corners=False)
    low, high = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    masks = torch.where(high > low, (up - low) / (high - low).clamp(min=1e-30), 0.0)
    values = []
    for index, scale in enumerate(scales):
        shift = torch.zeros(len(x), *masks.shape[1:]) if noise is None else noise[index]
        values.append(torch.stack([utility_of("softmax", model(x[b] * (scale * masks[b] + shift[b])[:, None]),
                                              target[b].expand(A.shape[1])) for b in range(len(x))]))
    return torch.stack(values).mean(0)


def test_sscam_and_iscam_follow_their_formulas(setup):
    model, x, target = setup
    iscam = cam_lib.explain(model, x, "features", "iscam", utility="softmax", n_samples=4, masks_per_call=7)
    torch.testing.assert_close(iscam.alpha, score_reference(model, x, target, [0.25, 0.5, 0.75, 1.0]),
                               rtol=1e-4, atol=1e-6)
    generator = torch.Generator().manual_seed(5)  # the noise of one call of 12 masks (K = 12) per image
    noise = torch.stack([torch.stack([torch.randn(12, *x.shape[-2:], generator=generator) for _ in x])
                         for _ in range(3)]) * 0.5
    sscam = cam_lib.explain(model, x, "features", "sscam", utility="softmax", n_samples=3, sigma=0.5, seed=5,
                            masks_per_call=12)
    torch.testing.assert_close(sscam.alpha, score_reference(model, x, target, [1.0] * 3, noise), rtol=1e-4, atol=1e-6)
    scorecam = cam_lib.explain(model, x, "features", "scorecam", utility="softmax")
    for one_step in (cam_lib.explain(model, x, "features", "iscam", utility="softmax", n_samples=1),
                     cam_lib.explain(model, x, "features", "sscam", utility="softmax", n_samples=1, sigma=0.0)):
        torch.testing.assert_close(one_step.alpha, scorecam.alpha, rtol=1e-5, atol=1e-7)
    again = cam_lib.explain(model, x, "features", "sscam", utility="softmax", n_samples=3, sigma=0.5, seed=5)
    other = cam_lib.explain(model, x, "features", "sscam", utility="softmax", n_samples=3, sigma=0.5, seed=6)
    assert torch.equal(sscam.alpha, again.alpha) and not torch.allclose(sscam.alpha, other.alpha)


@pytest.mark.parametrize("name", ["sscam", "iscam"])
def test_score_methods_agree_with_torchcam(name):
    """TorchCAM's SS-CAM (same seed, same order of draws: the same noise) and IS-CAM with one step.

    TorchCAM softmaxes the mean logits over channels; that softmax is applied to cam_lib's alpha here.
    """
    from torchcam.methods import ISCAM, SSCAM
    model, x = seeded(FullResNet), images()
    options = dict(n_samples=3, sigma=0.5, seed=7) if name == "sscam" else dict(n_samples=1)
    exp = cam_lib.explain(model, x, "features", name, utility="logit", **options)
    extractor = (SSCAM(model, "features", num_samples=3, std=0.5, input_shape=(3, 16, 16)) if name == "sscam"
                 else ISCAM(model, "features", num_samples=1, input_shape=(3, 16, 16)))
    with extractor:
        model(x)
        torch.manual_seed(7)
        theirs = extractor(class_idx=exp.target.tolist(), normalized=False)[0]
    mine = torch.einsum("bk,bkhw->bhw", exp.alpha.softmax(1), exp.activations).relu()
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["smoothgradcam++", "sscam", "iscam"])
def test_sampling_methods_refuse_bad_options(method):
    model, x = seeded(VggNet), images(1)
    with pytest.raises(ValueError, match="n_samples"):
        cam_lib.explain(model, x, "features", method, n_samples=0)
    if method != "iscam":
        with pytest.raises(ValueError, match="sigma"):
            cam_lib.explain(model, x, "features", method, sigma=-1.0)



def test_every_method_has_a_card_with_a_family_and_a_cost():
    cards = cam_lib.methods.CARDS
    assert set(cards) == set(cam_lib.METHODS)
    families = {cam_lib.methods.GRADIENTS, cam_lib.methods.GAME, cam_lib.methods.ACTIVATIONS}
    assert {card.family for card in cards.values()} == families
    assert all(card.cost and card.cost != "not stated" for card in cards.values())


def test_a_method_registered_without_a_card_gets_a_plain_one():
    try:
        cam_lib.register("Card-Less")(cam_lib.METHODS["gradcam"])
        card = cam_lib.methods.CARDS["card-less"]
        assert (card.family, card.cost) == ("your own", "not stated")
    finally:
        cam_lib.METHODS.pop("card-less", None)
        cam_lib.methods.CARDS.pop("card-less", None)

"""Transformer tokens and channels-last maps read as activation maps: the game is the same, its players the channels."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_explain import state
from torch import nn
from toy_models import CLASSES, images, seeded

import cam_lib
from cam_lib import fusion, layout, metrics, sanity, zoo
from cam_lib.state import evaluating


class TokenNet(nn.Module):
    """4x4 patch tokens after a class token, and a head DeepLIFT covers: ReLU, mean over the tokens, linear."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.patches = nn.Conv2d(3, width, 4, stride=4)
        self.class_token = nn.Parameter(torch.randn(1, 1, width))
        self.block = nn.Linear(width, width)
        self.fc = nn.Linear(width, CLASSES)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.class_token.expand(x.shape[0], -1, -1), tokens], 1))
        return self.fc(F.relu(tokens).mean(1))


class ChannelsLastNet(nn.Module):
    """A channels-last stage ``[B, H, W, C]`` (as in Swin), then ReLU, pooling and a linear layer."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.patches = nn.Conv2d(3, width, 4, stride=4)
        self.block = nn.Linear(width, width)
        self.fc = nn.Linear(width, CLASSES)

    def forward(self, x):
        return self.fc(F.relu(self.block(self.patches(x).permute(0, 2, 3, 1))).mean((1, 2)))


def tiny_vit() -> nn.Module:
    """A one-block ViT on 16x16 images: 2x2 patches of 8 channels, so 8 players and exact Shapley values."""
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                                                 hidden_dim=8, mlp_dim=16, num_classes=CLASSES)
    nn.init.normal_(model.heads.head.weight)  # torchvision zero-initialises the head: every game would be null
    return model.eval()


def outputs(model: nn.Module, x: torch.Tensor, layer: str, replace=None) -> torch.Tensor:
    """The model's logits, with the layer's output passed through ``replace`` if given."""
    hook = model.get_submodule(layer).register_forward_hook(lambda m, i, out: replace(out)) if replace else None
    try:
        with torch.no_grad():
            return model(x)
    finally:
        if hook:
            hook.remove()


def patches_zeroed(tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat([tokens[:, :1], torch.zeros_like(tokens[:, 1:])], 1)


@pytest.mark.parametrize("trace", [True, False])
def test_vit_tokens_are_maps_and_the_class_token_is_held_fixed(trace):
    model, x = tiny_vit(), images(2)
    layer = zoo.torchvision_layer(model)
    exp = cam_lib.explain(model, x, layer, "exact", reshape="vit", trace=trace)
    assert exp.activations.shape == (2, 8, 2, 2) and exp.saliency.shape == (2, 16, 16)
    rows = torch.arange(2)
    torch.testing.assert_close(exp.score, outputs(model, x, layer)[rows, exp.target])
    torch.testing.assert_close(exp.baseline, outputs(model, x, layer, patches_zeroed)[rows, exp.target])
    assert exp.local_accuracy_gap.max() < 1e-5  # exact Shapley values are efficient


@pytest.mark.parametrize("trace", [True, False])
def test_noisy_copies_are_cut_through_the_layout(trace):
    """Smooth Grad-CAM++ cuts noisy copies of the images: they must come back as maps too."""
    model, x = tiny_vit(), images(2)
    layer = zoo.torchvision_layer(model)
    smooth = cam_lib.explain(model, x, layer, "smoothgradcam++", reshape="vit", trace=trace, n_samples=2, sigma=0.0)
    plain = cam_lib.explain(model, x, layer, "gradcam++", reshape="vit", trace=trace)
    torch.testing.assert_close(smooth.alpha, plain.alpha)


def test_shap_cam_converges_to_exact_shapley_values_on_a_vit():
    explainer = cam_lib.Explainer(tiny_vit(), "encoder.layers.encoder_layer_0.ln_1", reshape="vit")
    x = images(1)
    exact = explainer(x, "exact").alpha
    errors = []
    for permutations in (20, 500):
        shap = explainer(x, "shap", n_permutations=permutations, seed=1)
        assert ((shap.alpha - exact).abs() <= 4 * shap.stderr + 1e-6).all()
        errors.append(float((shap.alpha - exact).abs().max()))
    assert errors[1] < errors[0] / 2


@pytest.mark.parametrize("trace", [True, False])
def test_lift_is_exact_on_tokens_where_its_rules_apply(trace):
    model, x = seeded(TokenNet), images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lift = cam_lib.explain(model, x, "block", "lift", reshape="vit", trace=trace)
    assert lift.activations.shape == (2, 6, 4, 4)
    assert lift.local_accuracy_gap.max() < 1e-5
    to_maps = lambda tokens: tokens[:, 1:].transpose(1, 2).unflatten(2, (4, 4))  # noqa: E731
    from_maps = lambda maps, tokens: torch.cat([tokens[:, :1], maps.flatten(2).transpose(1, 2)], 1)  # noqa: E731
    pair = cam_lib.explain(model, x, "block", "lift", reshape=(to_maps, from_maps), trace=trace)
    torch.testing.assert_close(pair.alpha, lift.alpha)


@pytest.mark.parametrize("trace", [True, False])
def test_channels_last_maps(trace):
    model, x = seeded(ChannelsLastNet), images(2)
    lift = cam_lib.explain(model, x, "block", "lift", reshape="channels-last", trace=trace)
    assert lift.activations.shape == (2, 6, 4, 4) and lift.local_accuracy_gap.max() < 1e-5
    exact = cam_lib.explain(model, x, "block", "exact", reshape="channels-last", trace=trace)
    rows = torch.arange(2)
    torch.testing.assert_close(exact.baseline, outputs(model, x, "block", torch.zeros_like)[rows, exact.target])
    with pytest.warns(UserWarning, match='reshape="channels-last"'):  # read as [B, K, h, w] without it
        cam_lib.explain(model, x, "block", "gradcam", trace=trace)


@pytest.mark.parametrize("trace", [True, False])
def test_metrics_explain_again_through_the_explanations_own_layout(trace):
    """Coherency and channel correlation rebuild the explainer: without ``explainer=`` it must read the tokens
    as the Explanation did (a bare cut refuses 3-d tokens), and give what the caller's own explainer gives."""
    model, x = tiny_vit(), images(2)
    layer = zoo.torchvision_layer(model)
    explainer = cam_lib.Explainer(model, layer, trace, reshape="vit")
    gradcam, names = explainer(x, "gradcam"), ["coherency", "channel_correlation"]
    rebuilt = metrics.evaluate(model, x, gradcam, names, n_subsets=8)
    given = metrics.evaluate(model, x, gradcam, names, n_subsets=8, explainer=explainer)
    np.testing.assert_allclose(rebuilt.value, given.value, rtol=1e-5, atol=1e-5)


def test_register_tokens_are_held_fixed_and_patches_keep_their_place():
    tokens = torch.randn(2, 1 + 4 + 256, 3)
    maps = layout.PRESETS["vit"].to_maps(tokens)
    assert maps.shape == (2, 3, 16, 16)
    torch.testing.assert_close(maps[:, :, 2, 5], tokens[:, 1 + 4 + 2 * 16 + 5])
    back = layout.PRESETS["vit"].from_maps(torch.zeros_like(maps), tokens)
    assert torch.equal(back[:, :5], tokens[:, :5]) and not back[:, 5:].any()
    small = torch.randn(1, 1 + 4 + 16, 3)  # 4 registers on a 4x4 grid: ambiguous unless told
    with pytest.raises(ValueError, match="21 tokens are not a class token, R register tokens and a square grid"):
        layout.PRESETS["vit"].to_maps(small)
    assert layout.vit(registers=4).to_maps(small).shape == (1, 3, 4, 4)


@pytest.mark.parametrize("call, words", [
    (lambda: cam_lib.explain(tiny_vit(), images(1), "encoder.layers.encoder_layer_0.ln_1"), 'reshape="vit"'),
    (lambda: cam_lib.explain(tiny_vit(), images(1), "encoder.layers.encoder_layer_0.ln_1", reshape="channels-last"),
     'reshape="vit"'),
    (lambda: cam_lib.explain(seeded(ChannelsLastNet), images(1), "block", reshape="vit"), "channels-last"),
    (lambda: cam_lib.explain(seeded(TokenNet), images(1), "block", reshape="tokens"), "one of ['vit'"),
    (lambda: cam_lib.explain(seeded(TokenNet), images(1), "block", reshape=(lambda t: t[:, 1:, :, None], None)),
     "pair of callables"),
    (lambda: cam_lib.explain(seeded(TokenNet), images(1), "block", reshape=(lambda t: t, lambda m, t: t)),
     "to_maps must return maps"),
    (lambda: cam_lib.explain(seeded(TokenNet), images(1), "block",
                             reshape=(lambda t: t[:, 1:, :, None], lambda m, t: t * 2)), "must invert to_maps"),
])
def test_bad_layouts_get_a_clear_error(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value)


@pytest.mark.parametrize("name, layer, reshape, grid", [
    ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", "vit", (768, 14, 14)),
    ("swin_t", "features.7", "channels-last", (768, 7, 7)),
])
def test_torchvision_transformers(name, layer, reshape, grid):
    """The real models at 224x224: maps, the warning about LayerNorm and attention, the model given back."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    nn.init.normal_(model.get_submodule("heads.head" if name.startswith("vit") else "head").weight, std=0.1)
    assert (zoo.torchvision_layer(model), zoo.torchvision_reshape(model)) == (layer, reshape)
    model.train()
    model.get_submodule(layer).requires_grad_(False)
    before, x = state(model), torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="no DeepLIFT rule covers: .*LayerNorm") as record:
        lift = cam_lib.explain(model, x, layer, "lift", reshape=reshape)
    assert not [w for w in record if "forward hooks" in str(w.message)]  # the traced head agreed with the model
    assert lift.activations.shape == (1, *grid) and lift.saliency.shape == (1, 224, 224)
    assert lift.local_accuracy_gap.item() > 1e-4  # LayerNorm (and attention) break summation-to-delta
    with pytest.raises(ValueError):
        cam_lib.explain(model, x, layer, "lift", reshape="channels-last" if reshape == "vit" else "vit")
    after = state(model)
    assert before[:3] == after[:3] and all(torch.equal(before[3][k], after[3][k]) for k in before[3])
    with evaluating(model):
        direct = outputs(model, x, layer)[0, lift.target]
    torch.testing.assert_close(lift.score, direct, rtol=1e-4, atol=1e-4)


def test_sanity_cascade_and_layer_fusion_read_tokens_through_the_layout():
    """A ViT can be sanity-checked and its layers fused: both cut every layer with ``reshape="vit"``. The cascade's
    blocks place the class token in the body, redraw it although it has no reset_parameters(), and step 0 is the
    model's own map; a fused layer's own explanation is the plain one."""
    model, x = tiny_vit(), images(2)
    layer = zoo.torchvision_layer(model)
    table = sanity.cascade(model, x, layer, ["gradcam"], reshape="vit")
    trained = table[(table.step == 0) & (table.metric == "spearman")]
    np.testing.assert_allclose(trained.value, 1.0, atol=1e-6)
    blocks = {block.name: block.in_head for block in sanity.parameter_blocks(model, layer, x)}
    assert blocks["heads.head"] and not blocks[""]  # the class token is read before the layer: the body
    assert table.step.max() == len(blocks) and set(table.part) == {"none", "head", "body"}
    with torch.no_grad():
        model.class_token.normal_()  # as trained: torchvision starts it at 0
    token = model.class_token.clone()
    redrawn = sanity.randomise(model, sanity.parameter_blocks(model, layer, x)).class_token
    assert torch.equal(model.class_token, token) and not torch.allclose(redrawn, token)
    assert abs(redrawn.std() - token.std()) < 0.5 * token.std()  # the same scale
    later = "encoder.layers.encoder_layer_0.ln_2"  # the same block, after attention
    fused = fusion.explain_layers(model, x, [layer, later], "gradcam", reshape="vit")
    one = cam_lib.explain(model, x, layer, "gradcam", reshape="vit")
    torch.testing.assert_close(fused.explanations[layer].cam, one.cam)
    assert fused.saliency.shape == (2, 16, 16)

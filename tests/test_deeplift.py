"""LIFT-CAM says when the head holds operations that DeepLIFT's rules do not cover, and only then."""
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from toy_models import CLASSES, GapNet, images, seeded, stem

import cam_lib
from cam_lib.split import split_model


class GatedNet(nn.Module):
    """A squeeze-and-excitation gate in the head: the activations multiplied by a function of themselves."""

    def __init__(self, channels: int = 6):
        super().__init__()
        self.features = stem(channels)
        self.gate = nn.Linear(channels, channels)
        self.fc = nn.Linear(channels, CLASSES)

    def forward(self, x):
        h = self.features(x)
        return self.fc((h * torch.sigmoid(self.gate(h.mean((2, 3))))[:, :, None, None]).mean((2, 3)))


class GeluNet(GapNet):
    """GELU and a constant scale in the head: Rescale covers the one, the other is affine."""

    def forward(self, x):
        return self.fc(F.gelu(2.0 * self.features(x) - 1.0).mean((2, 3)))


def test_convnext_layernorm_head_warns_and_its_gap_shows_it():
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for trace, found in ((True, "layer_norm \\(in classifier.0\\)"), (False, "LayerNorm2d \\(classifier.0\\)")):
        with pytest.warns(UserWarning, match=f"no DeepLIFT rule covers: {found}"):
            lift = cam_lib.explain(model, x, "features.7", "lift", trace=trace)
        # LayerNorm is scale-invariant, so its gradient is orthogonal to A: the sum misses nearly all of v(N) - v(empty)
        assert lift.local_accuracy_gap.item() > 0.5 * (lift.score - lift.baseline).abs().item() > 0


@pytest.mark.parametrize("name, layer", [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_resnet_and_vgg_heads_do_not_warn(name, layer):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    for trace in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lift = cam_lib.explain(model, torch.randn(1, 3, 32, 32), layer, "lift", trace=trace)
        assert lift.local_accuracy_gap.item() < 1e-4 * (1 + lift.score.abs().item())


def test_covered_operations_do_not_warn_and_sum_to_delta():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lift = cam_lib.explain(seeded(GeluNet), images(2), "features", "lift")
    assert lift.local_accuracy_gap.max() < 1e-5


def test_a_product_of_two_activation_dependent_values_is_found():
    found = split_model(seeded(GatedNet), "features").uncovered
    assert len(found) == 1 and found[0].startswith("mul of two values that depend on the activations")
    with pytest.warns(UserWarning, match="mul of two values"):
        cam_lib.explain(seeded(GatedNet), images(1), "features", "lift")
    assert split_model(seeded(GeluNet), "features").uncovered == ()  # 2.0 * A: one factor is a constant

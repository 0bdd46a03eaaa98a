"""Multi-layer fusion against TorchCAM's LayerCAM.fuse_cams and RefineCAM, on a torchvision ResNet-18."""
import pytest
import torch
from toy_models import VggNet, images, seeded

import cam_lib
from cam_lib import fusion

LAYERS = ["layer2", "layer3", "layer4"]


@pytest.fixture(scope="module")
def resnet():
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=7).eval()
    return model, images(2, seed=1).repeat(1, 1, 4, 4)  # 64x64: layer2 8x8, layer3 4x4, layer4 2x2


def test_layercam_max_fusion_agrees_with_torchcam(resnet):
    """Per-layer normalisation, tanh(2 L), bilinear to layer2's 8x8, maximum: TorchCAM's eps 1e-8 apart."""
    from torchcam.methods import LayerCAM
    model, x = resnet
    fused = fusion.explain_layers(model, x, LAYERS, "layercam")
    with LayerCAM(model, LAYERS, input_shape=(3, 64, 64)) as extractor:
        cams = extractor(class_idx=fused.explanations["layer4"].target.tolist(), scores=model(x))
        theirs = extractor.fuse_cams(cams)
    assert fused.fused.shape == theirs.shape == (2, 8, 8)
    torch.testing.assert_close(fused.fused, theirs, rtol=0, atol=1e-5)
    assert fused.saliency.shape == (2, 64, 64) and fused.saliency.amax((1, 2)).eq(1).all()
    no_tanh = fusion.explain_layers(model, x, LAYERS, "layercam", gamma=None)
    assert (no_tanh.fused - fused.fused).abs().max() > 1e-2  # the tanh matters


def test_refinecam_product_fusion_agrees_with_torchcam(resnet):
    from torchcam.methods import LayerCAM, RefineCAM
    model, x = resnet
    fused = fusion.explain_layers(model, x, LAYERS, "layercam", fusion="product")
    with RefineCAM(model, LAYERS, input_shape=(3, 64, 64), base_method=LayerCAM) as extractor:
        theirs = extractor(class_idx=fused.explanations["layer2"].target.tolist(), scores=model(x))[0]
    torch.testing.assert_close(fused.fused, theirs, rtol=0, atol=1e-5)


def test_fuse_is_the_maximum_or_the_product_of_the_normalised_maps():
    cams = [torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    torch.testing.assert_close(fusion.fuse(cams), torch.maximum(*[cam_lib.maps.minmax(cam) for cam in cams]))
    product = cam_lib.maps.minmax(cams[0]) * cam_lib.maps.minmax(cams[1])
    torch.testing.assert_close(fusion.fuse(cams, "product"), cam_lib.maps.minmax(product))
    small = fusion.fuse([cams[0], cams[1][:, ::2, ::2].contiguous()], size=(6, 6))
    assert small.shape == (2, 6, 6)


def test_every_layer_is_explained_for_the_same_target():
    model, x = seeded(VggNet), images()
    fused = fusion.explain_layers(model, x, ["features.1", "features.4"], "gradcam++", fusion="product", target=2)
    assert all(e.target.eq(2).all() for e in fused.explanations.values())
    one = cam_lib.explain(model, x, "features.4", "gradcam++", target=2)
    torch.testing.assert_close(fused.explanations["features.4"].cam, one.cam)


def test_bad_fusions_are_refused():
    model, x = seeded(VggNet), images(1)
    with pytest.raises(ValueError, match="at least two layers"):
        fusion.explain_layers(model, x, "features", "layercam")
    with pytest.raises(ValueError, match="unknown fusion"):
        fusion.explain_layers(model, x, ["features.1", "features.4"], fusion="mean")
    with pytest.raises(ValueError, match="different"):
        fusion.explain_layers(model, x, ["features.4", "features.4"])
    with pytest.raises(ValueError, match="gamma"):
        fusion.fuse([torch.ones(1, 2, 2)], gamma=0.0)
    with pytest.raises(TypeError, match="list"):
        fusion.fuse(torch.ones(1, 2, 2))

"""grad-cam's aug_smooth and eigen_smooth, against the grad-cam package and as properties of the projection."""
import grad_cam_reference
import numpy as np
import pytest
import torch
from toy_models import GapNet, VggNet, images, seeded

import cam_lib
from cam_lib import smoothing


def package_output(cam_class, model, x, target, aug_smooth=False, eigen_smooth=False, capture=False):
    """grad-cam's final map [B, H, W] (or, with ``capture``, the raw map of get_cam_image)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    final, raw = grad_cam_reference.run(cam_class, model, x, [ClassifierOutputTarget(int(c)) for c in target],
                                        model.features, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
    return torch.from_numpy(np.asarray(raw if capture else final)).float()


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "layercam", "gradcam-elementwise"])
def test_eigen_smooth_agrees_with_the_grad_cam_package_up_to_sign(name):
    import pytorch_grad_cam as package
    classes = {"gradcam": package.GradCAM, "gradcam++": package.GradCAMPlusPlus, "layercam": package.LayerCAM,
               "gradcam-elementwise": package.GradCAMElementWise}
    model, x = seeded(VggNet), images()
    with torch.no_grad():  # as in test_methods: the package's eps in Grad-CAM++ becomes negligible
        model.classifier[5].weight *= 100
    exp = cam_lib.explain(model, x, "features", name, eigen_smooth=True)
    raw = package_output(classes[name], model, x, exp.target, eigen_smooth=True, capture=True)
    for mine, theirs in zip(exp.cam, raw):
        gap = min((mine - (sign * theirs).relu()).abs().max() for sign in (1, -1))
        assert gap <= 1e-3 * theirs.abs().max(), (name, gap)
    plain = cam_lib.explain(model, x, "features", name)
    torch.testing.assert_close(exp.alpha, plain.alpha)  # the coefficients stay the method's
    assert not torch.allclose(exp.cam, plain.cam)


@pytest.mark.parametrize("name", ["gradcam", "layercam"])
def test_aug_smooth_agrees_with_the_grad_cam_package(name):
    """Six augmentations; grad-cam averages the normalised maps, cam_lib normalises that mean again."""
    import pytorch_grad_cam as package
    model, x = seeded(VggNet), images()
    exp = cam_lib.explain(model, x, "features", name, aug_smooth=True)
    cls = {"gradcam": package.GradCAM, "layercam": package.LayerCAM}[name]
    theirs = cam_lib.maps.minmax(package_output(cls, model, x, exp.target, aug_smooth=True))
    torch.testing.assert_close(exp.saliency, theirs, rtol=0, atol=1e-4)
    plain = cam_lib.explain(model, x, "features", name)
    assert torch.equal(exp.alpha, plain.alpha) and torch.equal(exp.target, plain.target)
    assert (exp.saliency - plain.saliency).abs().max() > 1e-2  # the average is not the plain map


def test_aug_smooth_of_a_flip_symmetric_input_is_symmetric():
    """Each flipped view is flipped back, so a mirror-symmetric image gets a mirror-symmetric mean map."""
    x = images(2)
    x = torch.cat([x[..., :8], x[..., :8].flip(-1)], -1)
    exp = cam_lib.explain(seeded(GapNet), x, "features", "gradcam", aug_smooth=True)
    torch.testing.assert_close(exp.saliency, exp.saliency.flip(-1), rtol=0, atol=1e-5)
    assert exp.saliency.amax((1, 2)).eq(1).all() and exp.saliency.amin((1, 2)).eq(0).all()


def test_principal_terms_project_on_the_first_component():
    terms = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(0)) + 1
    projected = smoothing.principal_terms(terms)
    points = (terms - terms.mean((2, 3), keepdim=True)).flatten(2).transpose(1, 2)  # [B, hw, K]
    for b in range(3):
        covariance = points[b].T @ points[b]
        component = torch.linalg.eigh(covariance).eigenvectors[:, -1]  # the largest eigenvalue's
        component = component * torch.sign(component @ terms[b].mean((1, 2)))
        torch.testing.assert_close(projected[b].sum(0).flatten(), points[b] @ component, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(projected.sum((2, 3)), torch.zeros(3, 5), rtol=0, atol=1e-5)  # alpha = 0


def test_smoothing_flags_must_be_booleans():
    with pytest.raises(TypeError, match="aug_smooth"):
        cam_lib.explain(seeded(VggNet), images(1), "features", "gradcam", aug_smooth="yes")
    with pytest.raises(TypeError, match="eigen_smooth"):
        cam_lib.explain(seeded(VggNet), images(1), "features", "gradcam", eigen_smooth=1)


def test_aug_smooth_explains_every_copy_with_a_callable_utility():
    """A callable utility picks its own output and takes no target: the augmented copies are explained with it,
    as the original was, and give the map the logit of the same class gives."""
    model, x = seeded(GapNet), images(2)
    by_callable = cam_lib.explain(model, x, "features.4", "gradcam", utility=lambda y: y[:, 1], aug_smooth=True)
    by_name = cam_lib.explain(model, x, "features.4", "gradcam", target=1, aug_smooth=True)
    torch.testing.assert_close(by_callable.saliency, by_name.saliency)

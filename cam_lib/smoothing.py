"""grad-cam's two smoothing options, for every method: ``eigen_smooth`` and ``aug_smooth``.

Both change what the map means in the channel game. ``eigen_smooth`` keeps the method's ``alpha`` but draws
the first principal component of its terms instead of their sum, so the map is no longer
``ReLU(sum_k alpha_k A_k)``. ``aug_smooth`` averages the maps of six images (flipped, intensities scaled):
six games with six sets of players, so the average is no longer one game's coefficients.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from . import maps
from .utility import OutputUtility

# grad-cam's default test-time augmentations (ttach): horizontal flip x intensity factor; the identity first.
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple((flip, factor) for flip in (False, True)
                                                      for factor in (1.0, 0.9, 1.1))


def principal_terms(terms: Tensor) -> Tensor:
    """Element-wise terms ``v_k (T_k - mean_ij T_k)`` of the first principal component ``v`` of ``terms``.

    Each position ``ij`` is a point ``T_:ij`` in ``R^K``; ``v`` ``[B, K]`` is the first right singular vector
    of the centred points, so ``sum_k`` of the result is the projection of each position on ``v`` (grad-cam's
    ``get_2d_projection``). A singular vector's sign is arbitrary: it is chosen so that ``v . mean_ij T_:ij > 0``,
    pointing the component along the terms' mean (for ``T = A``: where the layer is active).
    """
    centred = terms - terms.mean((2, 3), keepdim=True)
    _, _, right = torch.linalg.svd(centred.flatten(2).transpose(1, 2), full_matrices=False)
    component = right[:, 0]  # [B, K]
    sign = torch.where((component * terms.mean((2, 3))).sum(1, keepdim=True) < 0, -1.0, 1.0)
    return (sign * component)[:, :, None, None] * centred


def eigen_smooth(result: Tensor, activations: Tensor) -> Tensor:
    """``ReLU`` of the projection of a method's terms on their first principal component: ``[B, h, w]``.

    ``result`` is ``alpha`` ``[B, K]`` (terms ``alpha_k A_k``) or element-wise terms ``[B, K, h, w]``.
    """
    terms = result if result.ndim == 4 else result[:, :, None, None] * activations
    return principal_terms(terms).sum(1).relu()


def check_flags(**flags: object) -> None:
    """The smoothing options are booleans."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r}")


def augmented(explainer: Callable, images: Tensor, method: str, target: int | Sequence[int] | Tensor | None,
              utility: str | OutputUtility, **options):
    """``aug_smooth``: the mean of the maps of ``images`` under grad-cam's six augmentations, flipped back.

    ``explainer`` is a ``cam_lib.Explainer`` (it imports this module); the result is its ``Explanation``.

    Every augmented image is explained as the original was (its target, or the callable utility). ``cam`` is
    the mean of the six maps at the layer's resolution; ``saliency`` the mean of the six normalised maps (as
    grad-cam), normalised again.
    ``alpha``, ``activations``, ``score`` and ``baseline`` stay those of the original image's game: the six
    games have different players, and no one ``alpha`` draws the averaged map. Costs six explanations.
    """
    first = explainer(images, method, target, utility, **options)
    cams, saliencies = [first.cam], [first.saliency]
    for flip, factor in AUGMENTATIONS[1:]:
        view = images * factor
        explanation = explainer(view.flip(-1) if flip else view, method, *first.replay(), **options)
        cams.append(explanation.cam.flip(-1) if flip else explanation.cam)
        saliencies.append(explanation.saliency.flip(-1) if flip else explanation.saliency)
    return dataclasses.replace(first, cam=torch.stack(cams).mean(0),
                               saliency=maps.minmax(torch.stack(saliencies).mean(0)))

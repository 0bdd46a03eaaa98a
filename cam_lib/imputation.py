"""Noisy linear imputation (Rong et al. 2022): fill removed pixels from their neighbours, for ROAD.

Painting removed pixels with a constant colour leaks the removal pattern itself to the model: the shape
of the hole tells the class. ROAD instead sets every removed pixel to the weighted mean of its 8
neighbours (weight 1/6 for the 4 direct ones, 1/12 for the 4 diagonal ones; neighbours outside the image
are left out), the kept pixels held fixed, per colour channel:

``sum_{n in N(i)} w_n (x_i - x_n) = 0`` for every removed pixel ``i``,

then adds Gaussian noise of standard deviation ``noise`` to the imputed pixels. The system is symmetric
positive definite when every region of removed pixels touches a kept pixel, so conjugate gradients with a
Jacobi preconditioner solve all images and channels at once, the matrix product being a 3 x 3 convolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))


def neighbour_sum(values: Tensor) -> Tensor:
    """``sum_n w_n values_n`` over each pixel's in-image neighbours, per channel: ``[N, C, H, W]``."""
    channels = values.shape[1]
    kernel = torch.tensor(NEIGHBOUR_WEIGHTS, dtype=values.dtype, device=values.device).expand(channels, 1, 3, 3)
    return F.conv2d(values, kernel, padding=1, groups=channels)


def noisy_linear_imputation(images: Tensor, keep: Tensor, noise: float = 0.01,
                            generator: torch.Generator | None = None, tolerance: float = 1e-6,
                            max_iterations: int = 2000) -> Tensor:
    """Images ``[B, C, H, W]`` whose pixels where ``keep`` ``[B, H, W]`` is 0 are imputed from their
    neighbours (the system above, solved to a relative residual ``tolerance``), plus ``noise * N(0, 1)``
    drawn from ``generator`` there; kept pixels are returned unchanged."""
    if keep.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"keep must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}; got {tuple(keep.shape)}")
    removed = (keep == 0).to(images.dtype)[:, None].expand_as(images)
    if not removed.any():
        return images.clone()
    if (removed.flatten(1).amin(1) == 1).any():
        raise ValueError("an image has every pixel removed, so there is nothing to impute from; keep at least one "
                         "pixel (ROAD removes at most 90 % by default)")
    kept_values = images * (1 - removed)
    diagonal = neighbour_sum(torch.ones_like(images[:1])).expand_as(images)  # in-image neighbour weight, d_i

    def apply(values: Tensor) -> Tensor:
        """``A x`` on the removed pixels: ``d_i x_i - sum_{n removed} w_n x_n``."""
        return removed * (diagonal * values - neighbour_sum(values))

    rhs = removed * neighbour_sum(kept_values)
    solution = torch.zeros_like(images)
    residual = rhs.clone()
    preconditioned = removed * residual / diagonal
    direction = preconditioned.clone()
    rz = (residual * preconditioned).sum((2, 3), keepdim=True)
    scale = rhs.square().sum((2, 3), keepdim=True).sqrt().clamp(min=1e-12)
    for _ in range(max_iterations):
        if (residual.square().sum((2, 3), keepdim=True).sqrt() <= tolerance * scale).all():
            break
        product = apply(direction)
        curvature = (direction * product).sum((2, 3), keepdim=True)
        step = rz / torch.where(curvature > 0, curvature, torch.ones_like(curvature))
        solution = solution + step * direction
        residual = residual - step * product
        preconditioned = removed * residual / diagonal
        rz_next = (residual * preconditioned).sum((2, 3), keepdim=True)
        direction = preconditioned + rz_next / rz.clamp(min=1e-30) * direction
        rz = rz_next
    else:
        raise RuntimeError(f"noisy linear imputation did not converge in {max_iterations} iterations; "
                           "raise max_iterations or tolerance")
    jitter = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return kept_values + removed * (solution + noise * jitter)


__all__ = ["NEIGHBOUR_WEIGHTS", "neighbour_sum", "noisy_linear_imputation"]

"""The grad-cam package run as a reference: its final map and the raw map it computes before scaling."""
from __future__ import annotations

import numpy as np
from torch import Tensor, nn


def run(cam_class: type, model: nn.Module, x: Tensor, targets: list, layer: nn.Module,
        **options: object) -> tuple[np.ndarray, np.ndarray]:
    """``cam_class(model, [layer])(x, targets, **options)``: its final map, and the first map its
    ``get_cam_image`` returned (before grad-cam scales and resizes it)."""
    explainer = cam_class(model=model, target_layers=[layer])
    captured = []
    original = explainer.get_cam_image

    def keep(*args, **kwargs):
        captured.append(original(*args, **kwargs))
        return captured[-1]

    explainer.get_cam_image = keep
    final = explainer(x, targets=targets, **options)
    return final, captured[0]

"""The numbers the LIFT-CAM and ShapleyCAM papers report, in the runner's names, to set beside ours.

One tidy table, ``numbers()``: ``paper, table, network, method, utility, metric, value``, with ``table``
the name of the ``reproduce`` table that reruns it and ``metric`` a key of ``metrics.METRICS``, so a paper's
row joins the summary of a run on ``(table, method, utility, metric)``. Their networks are ImageNet VGG16 and
ResNet50 (VGG19 + LSTM for VQA); ours are the embedded benchmark's small models, so values are compared in
direction and order, never digit by digit.

Sources: Jung & Oh, *Towards better explanations of class activation mapping*, ICCV 2021 (LIFT-CAM), Tables
1-6 (VGG16 on ImageNet; the VQA model on VQA v2); Cai, *CAMs as Shapley value-based explainers*, arXiv
2501.06261, 2025 (ShapleyCAM), the main table (ImageNet validation, ReST, metrics x 100).
"""
from __future__ import annotations

import pandas as pd

__all__ = ["numbers", "LIFT_CAM", "SHAPLEY_CAM"]

LIFT_CAM = "LIFT-CAM (Jung & Oh 2021)"
SHAPLEY_CAM = "ShapleyCAM (Cai 2025)"

_TABLE3_4 = {  # method: IC, AD, ADD (Table 3), insertion, deletion AUC (Table 4)
    "gradcam": (24.0, 31.89, 30.60, 0.4427, 0.0891), "gradcam++": (23.1, 30.53, 27.98, 0.4350, 0.0969),
    "xgradcam": (25.0, 31.36, 30.48, 0.4457, 0.0883), "scorecam": (22.8, 29.91, 27.52, 0.4345, 0.1002),
    "ablation": (24.1, 29.41, 32.52, 0.4685, 0.0873), "lift": (25.2, 29.15, 32.95, 0.4712, 0.0866),
}
_SHAPLEY_MAIN = {  # (network, method): AD, Coherency, Complexity, ADCC, IC, ADD (clamped), all with ReST
    ("VGG16", "gradcam"): (76.68, 69.28, 12.92, 43.60, 5.43, 22.98),
    ("VGG16", "shapleycam"): (31.30, 87.52, 25.32, 76.20, 22.39, 35.94),
    ("ResNet50", "gradcam"): (16.91, 95.63, 36.36, 78.53, 36.21, 38.37),
    ("ResNet50", "shapleycam"): (16.98, 95.81, 36.26, 78.59, 36.25, 38.38),
}


def numbers() -> pd.DataFrame:
    """Every reported number the runner has a counterpart for, one row each."""
    rows = []

    def add(paper: str, table: str, network: str, method: str, utility: str, metric: str, value: float) -> None:
        rows.append(dict(paper=paper, table=table, network=network, method=method, utility=utility,
                         metric=metric, value=value))

    for p, values in zip((1, 10, 100), ((25.9, 28.16, 32.64), (26.2, 27.54, 32.99), (26.4, 27.48, 33.03))):
        for metric, value in zip(("ic", "ad", "add"), values):
            add(LIFT_CAM, "table1", "VGG16", f"shap_{p}", "logit", metric, value)
    for method, value in {"gradcam": 0.489, "gradcam++": 0.385, "xgradcam": 0.406, "scorecam": 0.195,
                          "ablation": 0.972, "lift": 0.980}.items():
        add(LIFT_CAM, "table2", "VGG16", method, "logit", "cosine", value)
    for method, five in _TABLE3_4.items():
        for metric, value in zip(("ic", "ad", "add"), five[:3]):
            add(LIFT_CAM, "table3", "VGG16", method, "logit", metric, value)
        for metric, value in zip(("insertion", "deletion"), five[3:]):
            add(LIFT_CAM, "table4", "VGG16", method, "logit", metric, value)
    for method, value in {"gradcam": 47.76, "lift": 52.43}.items():
        add(LIFT_CAM, "table5", "VGG16", method, "logit", "pointing_box", value)
    for method, values in {"gradcam": (41.95, 16.71, 9.09), "lift": (43.39, 14.14, 9.58)}.items():
        for metric, value in zip(("ic", "ad", "add"), values):
            add(LIFT_CAM, "table6", "VGG19 + LSTM", method, "logit", metric, value)
    for (network, method), six in _SHAPLEY_MAIN.items():
        for metric, value in zip(("ad", "coherency", "complexity", "adcc", "ic", "add_clamped"), six):
            add(SHAPLEY_CAM, "shapleycam", network, method, "rest", metric, value)
    return pd.DataFrame(rows)

"""What made the full reproduction fit 1,000 scenes per model: each speed-up against the way it was, in one run.

    python benchmarks/metrics_speed.py [--scenes 64] [--out benchmarks/metrics_speed.csv]

On the look-alike models and held-out scenes, three pairs are timed (median of repeated runs after a
warm-up, ``speed.seconds``; ratio > 1 means the second way is faster) and checked to give the same values:

- insertion/deletion curves through the model as trained, and through ``runtime.inference_copy``
  (batch norm folded, channels-last);
- six maps scored with IC, AD, ADD and faithfulness correlation, each on its own, and sharing the passes that
  do not depend on the map (``metrics.evaluate(shared=...)``), as the runner's methods do;
- Score-CAM with 256 masked images per call and with 32 (its default: bigger calls were slower here).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from speed import seconds  # benchmarks/speed.py: the same timing rule

import cam_lib
from cam_lib import data, metrics, runtime, zoo

MODELS = ("lookalike-vgg", "lookalike-resnet")
SCORED = ["ic", "ad", "add", "faithfulness_correlation"]


def pairs(name: str, scenes: int, repeats: int) -> list[dict]:
    """The three (before, after) pairs on one model: seconds, ratio and the largest difference in values."""
    loaded = zoo.load(name, torch.device("cpu"))
    model, images = loaded.model, data.make_lookalike_scenes(scenes, zoo.HELD_OUT_SEED).images
    explainer = cam_lib.Explainer(model, loaded.layer)
    maps = [explainer(images, method).saliency for method in ("gradcam", "lift", "ablation", "xgradcam",
                                                                "hirescam", "gradcam++")]
    fast = runtime.inference_copy(model)
    with torch.no_grad():
        target = model(images).argmax(1)
    curves = {kind: lambda m=m: metrics.insertion_deletion_curves(m, images, maps[0], target)
              for kind, m in (("model as trained", model), ("inference_copy", fast))}

    def scored(shared: bool) -> Callable[[], list[pd.DataFrame]]:
        def run() -> list[pd.DataFrame]:
            passes = {} if shared else None
            return [metrics.evaluate(fast, images, saliency, SCORED, target=target, shared=passes) for saliency in maps]
        return run

    def scorecam(per_call: int) -> Callable[[], torch.Tensor]:
        return lambda: explainer(images[:16], "scorecam", utility="softmax", masks_per_call=per_call).alpha

    rows = []
    for what, before, after, compare in [
        ("insertion/deletion, 41 steps", curves["model as trained"], curves["inference_copy"],
         lambda a, b: float((torch.stack(a) - torch.stack(b)).abs().max())),
        ("6 maps: IC, AD, ADD, faithfulness correlation", scored(False), scored(True),
         lambda a, b: float(max((x.value - y.value).abs().max() for x, y in zip(a, b)))),
        ("Score-CAM, 16 scenes", scorecam(256), scorecam(32), lambda a, b: float((a - b).abs().max())),
    ]:
        slow, quick = seconds(before, repeats), seconds(after, repeats)
        rows.append({"model": name, "work": what, "first (s)": round(slow, 3), "second (s)": round(quick, 3),
                     "ratio": round(slow / quick, 2), "max |difference|": compare(before(), after())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("metrics_speed.csv"))
    args = parser.parse_args()
    table = pd.DataFrame([row for name in MODELS for row in pairs(name, args.scenes, args.repeats)])
    table.to_csv(args.out, index=False)
    print(f"{torch.get_num_threads()} torch threads, {args.scenes} scenes\n{table.to_string(index=False)}")


if __name__ == "__main__":
    main()

"""Speed of every cam_lib method per image, next to its peers, in one run on this machine.

    python benchmarks/speed.py [--models resnet18 vgg16] [--skip-slow] [--out benchmarks/speed.csv]

Peers: the grad-cam package's implementation of the same method, Captum's DeepLift (LIFT-CAM) and
ShapleyValueSampling (SHAP-CAM, per permutation, on the same head with one feature per channel).
Every time is the median of repeated runs after a warm-up; ratios > 1 mean cam_lib is faster.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torchvision
from torch import nn

import cam_lib

LAYERS = {"resnet18": "layer4", "vgg16": "features.29"}
PACKAGE_CLASSES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                   "hirescam": "HiResCAM", "scorecam": "ScoreCAM", "ablation": "AblationCAM",
                   "shapleycam": "ShapleyCAM"}
SLOW = {"scorecam", "ablation-peer"}


def seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(model: nn.Module, image: torch.Tensor, target: int) -> Callable[[], None]:
    """One ordinary forward and backward pass of the whole network: the unit of cost."""
    def run() -> None:
        model.zero_grad(set_to_none=True)
        model(image)[0, target].backward()
    return run


def package_cam(name: str, model: nn.Module, layer: str, image: torch.Tensor, target: int) -> Callable[[], None]:
    """The grad-cam package's implementation of the same method."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = getattr(pytorch_grad_cam, PACKAGE_CLASSES[name])(model=model, target_layers=[model.get_submodule(layer)])
    if name == "scorecam":
        cam.batch_size = 32
    return lambda: cam(image, targets=[ClassifierOutputTarget(target)])


def head_module(model: nn.Module, name: str) -> nn.Module:
    """The head F after the explained layer, as a plain module for Captum."""
    if name == "resnet18":
        return nn.Sequential(model.avgpool, nn.Flatten(), model.fc)
    return nn.Sequential(model.features[30], model.avgpool, nn.Flatten(), model.classifier)


def captum_shap(head: nn.Module, activations: torch.Tensor, target: int, permutations: int) -> Callable[[], None]:
    """Captum's ShapleyValueSampling with one feature per channel."""
    from captum.attr import ShapleyValueSampling
    mask = torch.arange(activations.shape[1])[None, :, None, None].expand_as(activations).contiguous()
    sampler = ShapleyValueSampling(head)
    return lambda: sampler.attribute(activations, target=target, n_samples=permutations, feature_mask=mask,
                                     show_progress=False)


def captum_lift(model: nn.Module, layer: str, head: nn.Module, image: torch.Tensor, target: int) -> Callable[[], None]:
    """Captum's DeepLift on the head, after a forward pass to get the activations."""
    from captum.attr import DeepLift
    lift = DeepLift(head)
    grab = {}
    hook = model.get_submodule(layer).register_forward_hook(lambda m, i, o: grab.update(A=o))

    def run() -> None:
        with torch.no_grad():
            model(image)
        activations = grab["A"].clone().requires_grad_()
        lift.attribute(activations, baselines=torch.zeros_like(activations), target=target)
    run.hook = hook
    return run


def benchmark(name: str, size: int, repeats: int, skip_slow: bool, permutations: int) -> pd.DataFrame:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    for module in model.modules():  # Captum and the peers need out-of-place ReLUs to be correct
        if hasattr(module, "inplace"):
            module.inplace = False
    layer, image = LAYERS[name], torch.randn(1, 3, size, size)
    explainer = cam_lib.Explainer(model, layer)
    target = int(explainer(image, "gradcam").target)
    unit = seconds(forward_backward(model, image, target), repeats)
    head = head_module(model, name)
    activations = explainer(image, "gradcam").activations
    rows = []

    def record(method: str, ours: Callable, peer_name: str = "", peer: Callable | None = None,
               per: int = 1, peer_per: int = 1, count: int = repeats) -> None:
        mine = seconds(ours, count) / per
        theirs = seconds(peer, min(count, 3 if "Ablation" in peer_name else count)) / peer_per if peer else float("nan")
        rows.append({"model": name, "method": method, "cam_lib_s": mine, "x_forward_backward": mine / unit,
                     "peer": peer_name, "peer_s": theirs, "speedup_vs_peer": theirs / mine})
        print(rows[-1], flush=True)

    for method in ["gradcam", "gradcam++", "xgradcam", "hirescam", "shapleycam", "shapleycam-h", "lift", "cam"]:
        if method == "cam" and name != "resnet18":
            continue
        ours = lambda method=method: explainer(image, method, target=target)
        if method in PACKAGE_CLASSES:
            record(method, ours, f"grad-cam {PACKAGE_CLASSES[method]}", package_cam(method, model, layer, image, target))
        elif method == "lift":
            record(method, ours, "Captum DeepLift on the head", captum_lift(model, layer, head, image, target))
        else:
            record(method, ours)
    slow_peer = not skip_slow
    record("ablation", lambda: explainer(image, "ablation", target=target),
           "grad-cam AblationCAM" if slow_peer else "",
           package_cam("ablation", model, layer, image, target) if slow_peer else None, count=1)
    if not skip_slow:
        record("scorecam", lambda: explainer(image, "scorecam", target=target), "grad-cam ScoreCAM",
               package_cam("scorecam", model, layer, image, target), count=1)
    captum_count = 2
    record(f"shap (per permutation, P={permutations})",
           lambda: explainer(image, "shap", target=target, n_permutations=permutations),
           f"Captum ShapleyValueSampling (per permutation, P={captum_count})",
           captum_shap(head, activations, target, captum_count), per=permutations, peer_per=captum_count, count=1)
    if name == "resnet18":
        record("shap P=10000 (whole run)", lambda: explainer(image, "shap", target=target, n_permutations=10_000), count=1)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=20, help="SHAP-CAM orderings timed per model")
    parser.add_argument("--skip-slow", action="store_true", help="skip Score-CAM and grad-cam's AblationCAM")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("speed.csv"))
    args = parser.parse_args()
    table = pd.concat([benchmark(name, args.size, args.repeats, args.skip_slow, args.permutations)
                       for name in args.models])
    table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    print(f"threads={torch.get_num_threads()}, torch={torch.__version__}, wrote {args.out}")


if __name__ == "__main__":
    main()

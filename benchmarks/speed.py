"""Speed of every cam_lib method per image, next to its peers, in one run on this machine.

    python benchmarks/speed.py [--models resnet18 vgg16] [--skip-slow] [--threads N] [--out benchmarks/speed.csv]
    python benchmarks/speed.py --only shap [--threads 1]   # SHAP-CAM against batched Captum alone

Peers: the grad-cam package's implementation of the same method, Captum's DeepLift (LIFT-CAM) and
ShapleyValueSampling (SHAP-CAM, on the same head with one feature per channel: unbatched per permutation,
and batched at P = 10 replaying cam_lib's own orderings, so both compute the same numbers).
Every time is the median of repeated runs after a warm-up; ratios > 1 mean cam_lib is faster.
``--only shap`` replaces the SHAP-CAM rows of ``--out`` and keeps the others.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cam_lib, not an installed one
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


def captum_shap(head: nn.Module, activations: torch.Tensor, target: int, permutations: int, per_eval: int = 1,
                orderings: torch.Tensor | None = None) -> Callable[[], torch.Tensor]:
    """Captum's ShapleyValueSampling with one feature per channel, ``per_eval`` coalitions per head call
    (Captum batches within one ordering, so K at most); ``orderings`` ``[P, K]`` replace its random ones."""
    from captum.attr import ShapleyValueSampling
    mask = torch.arange(activations.shape[1])[None, :, None, None].expand_as(activations).contiguous()
    sampler = ShapleyValueSampling(head)
    if orderings is not None:
        sampler.permutation_generator = lambda features, samples: iter(orderings.tolist())
    return lambda: sampler.attribute(activations, target=target, n_samples=permutations, feature_mask=mask,
                                     perturbations_per_eval=per_eval, show_progress=False)[:, :, 0, 0]


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time of each run, the runs taking turns (a, b, c, a, b, c, ...) so load hits all alike;
    and what each returned last."""
    times: dict[str, list[float]] = {key: [] for key in runs}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            results[key] = run()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}, results


def linear_floor(explainer: cam_lib.Explainer, rows: int) -> tuple[Callable[[], object], float]:
    """The matrix products SHAP-CAM cannot avoid: the tail's linear layers (the readout's one row aside) on
    ``rows`` pre-activations, on the faster of the two CPU kernels; and their multiply-adds."""
    additive = explainer.split.additive
    tail = additive.features if additive.features is not None else additive.tail
    layers = [m for m in tail.modules() if isinstance(m, nn.Linear)] if not additive.is_output else []
    inputs = [torch.randn(rows, layer.in_features) for layer in layers]
    kernels = [lambda x, layer: nn.functional.linear(x, layer.weight, layer.bias)]
    if cam_lib.additive.ONEDNN_LINEAR:
        kernels.append(lambda x, layer: torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], ""))
    runs = {i: (lambda kernel=kernel: [kernel(x, layer) for x, layer in zip(inputs, layers)])
            for i, kernel in enumerate(kernels)}
    with torch.inference_mode():
        fastest = min(interleaved(runs, 3)[0].items(), key=lambda item: item[1])[0]
    return runs[fastest], float(sum(rows * layer.in_features * layer.out_features for layer in layers))


def shap_against_batched_captum(name: str, explainer: cam_lib.Explainer, head: nn.Module, image: torch.Tensor,
                                target: int, permutations: int, repeats: int) -> list[dict]:
    """SHAP-CAM_P against Captum's ShapleyValueSampling batched, on the same head, game and orderings.

    Both start from the layer's activations (the body runs once, outside the timing): cam_lib builds its game
    (channel terms included) and runs P orderings; Captum evaluates the head on the same P orderings. A first
    Captum run on its own random orderings warms it up and checks the estimates agree statistically
    (``z``: the difference over its standard error, about 1 in size); the timed runs replay cam_lib's
    orderings and must give the same numbers. All in inference mode, timed in turns, medians.
    """
    cut = explainer.split(image, ())
    players = cut.activations.shape[1]
    targets = torch.tensor([target])
    orderings = cam_lib.shapley.random_orderings(permutations, players, seed=0)  # what shap(seed=0) draws

    def ours() -> tuple[torch.Tensor, torch.Tensor]:
        return cam_lib.methods.shap(cam_lib.ChannelGame(cut, cam_lib.utility.logit, targets, image), permutations)

    floor, multiply_adds = linear_floor(explainer, permutations * (players + 1))
    runs = {"ours": ours, "whole call": lambda: explainer(image, "shap", target=target, n_permutations=permutations),
            "captum": captum_shap(head, cut.activations, target, permutations, players, orderings), "floor": floor}
    with torch.inference_mode():
        alpha, stderr = ours()
        theirs_own = captum_shap(head, cut.activations, target, permutations, players)()
        times, results = interleaved(runs, repeats)
    replayed = results["captum"]
    scale = alpha.abs().max()
    # a channel with the same marginal in every ordering (a zero map; any channel of an additive game, as on
    # ResNet's linear head) has no sampling error: there both must agree to float rounding
    varies = stderr > 1e-5 * scale
    z = (alpha - theirs_own)[varies] / (2 ** 0.5 * stderr[varies])
    check = {"max_rel_diff_same_orderings": float((alpha - replayed).abs().max() / scale),
             "rms_z_own_orderings": float(z.pow(2).mean().sqrt()) if len(z) else float("nan"),
             "share_abs_z_over_3": float((z.abs() > 3).float().mean()) if len(z) else float("nan"),
             "max_rel_diff_constant_channels": float(torch.cat([(alpha - theirs_own)[~varies].abs(),
                                                                alpha.new_zeros(1)]).max() / scale),
             "max_rel_diff_own_orderings": float((alpha - theirs_own).abs().max() / scale),
             "floor_s": times["floor"], "floor_gflops": 2 * multiply_adds / 1e9}
    peer = f"Captum ShapleyValueSampling, batched ({players} per eval, P={permutations})"
    return [{"model": name, "method": f"shap P={permutations} (head, from the activations)", "cam_lib_s": times["ours"],
             "peer": peer, "peer_s": times["captum"], "speedup_vs_peer": times["captum"] / times["ours"], **check},
            {"model": name, "method": f"shap P={permutations} (whole call, body included)",
             "cam_lib_s": times["whole call"], "peer": peer, "peer_s": times["captum"],
             "speedup_vs_peer": times["captum"] / times["whole call"]}]


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


def benchmark(name: str, size: int, repeats: int, skip_slow: bool, permutations: int, only: str | None = None
              ) -> pd.DataFrame:
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
        if only == "shap":
            break
        if method == "cam" and name != "resnet18":
            continue
        def ours(method: str = method) -> object:
            return explainer(image, method, target=target)

        if method in PACKAGE_CLASSES:
            peer = package_cam(method, model, layer, image, target)
            record(method, ours, f"grad-cam {PACKAGE_CLASSES[method]}", peer)
        elif method == "lift":
            record(method, ours, "Captum DeepLift on the head", captum_lift(model, layer, head, image, target))
        else:
            record(method, ours)
    slow_peer = not skip_slow
    if only != "shap":
        record("ablation", lambda: explainer(image, "ablation", target=target),
               "grad-cam AblationCAM" if slow_peer else "",
               package_cam("ablation", model, layer, image, target) if slow_peer else None, count=1)
    if not skip_slow and only != "shap":
        record("scorecam", lambda: explainer(image, "scorecam", target=target), "grad-cam ScoreCAM",
               package_cam("scorecam", model, layer, image, target), count=1)
    captum_count = 2
    record(f"shap (per permutation, P={permutations})",
           lambda: explainer(image, "shap", target=target, n_permutations=permutations),
           f"Captum ShapleyValueSampling (per permutation, P={captum_count})",
           captum_shap(head, activations, target, captum_count), per=permutations, peer_per=captum_count, count=1)
    if name == "resnet18":
        record("shap P=10000 (whole run)",
               lambda: explainer(image, "shap", target=target, n_permutations=10_000), count=1)
    for row in shap_against_batched_captum(name, explainer, head, image, target, 10, 3):
        rows.append({**row, "x_forward_backward": row["cam_lib_s"] / unit})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=20, help="SHAP-CAM orderings timed per model")
    parser.add_argument("--skip-slow", action="store_true", help="skip Score-CAM and grad-cam's AblationCAM")
    parser.add_argument("--only", choices=["shap"], help="time SHAP-CAM alone; its rows replace those in --out")
    parser.add_argument("--threads", type=int, help="torch threads for both sides (default: torch's own)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("speed.csv"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = pd.concat([benchmark(name, args.size, args.repeats, args.skip_slow, args.permutations, args.only)
                       for name in args.models])
    table["threads"] = threads = torch.get_num_threads()
    if args.only and args.out.exists():
        kept = pd.read_csv(args.out)
        kept["threads"] = kept["threads"].fillna(2) if "threads" in kept else 2  # rows from before: 2 threads
        replaced = kept.method.str.match(rf"{args.only}\b") & kept.model.isin(args.models) & (kept.threads == threads)
        table = pd.concat([kept[~replaced], table])
    table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    print(f"threads={torch.get_num_threads()}, torch={torch.__version__}, wrote {args.out}")


if __name__ == "__main__":
    main()

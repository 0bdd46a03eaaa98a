"""Command line: ``python -m cam_lib explain ...`` writes an overlay PNG; ``reproduce`` makes the papers' tables.

    python -m cam_lib explain --model shapes-vgg --method lift --out map.png
    python -m cam_lib explain --model shapes-resnet --image my_photo.png --method shap --out map.png
    python -m cam_lib reproduce --quick --out runs/quick
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a command line writes files; it never opens a window

import matplotlib.pyplot as plt
import torch

from . import METHODS, UTILITIES, data, viz, zoo
from .runtime import model_device


def explain_command(argv: Sequence[str]) -> int:
    """Explain one generated scene (``--index``) or a user's image file (``--image``) and save an overlay."""
    parser = argparse.ArgumentParser(prog="python -m cam_lib explain", description=explain_command.__doc__)
    parser.add_argument("--model", default="shapes-vgg", help=f"one of {list(zoo.SPECS)} or torchvision:NAME")
    parser.add_argument("--method", default="lift", choices=sorted(METHODS))
    parser.add_argument("--utility", default="logit", choices=sorted(UTILITIES))
    parser.add_argument("--layer", help="explained layer (default: the model's own)")
    parser.add_argument("--target", type=int, help="explained class (default: the predicted one)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--index", type=int, default=0, help="which generated scene (seed 0)")
    source.add_argument("--image", type=Path, help="an image file of your own")
    parser.add_argument("--out", type=Path, default=Path("map.png"))
    args = parser.parse_args(argv)
    loaded = zoo.load(args.model)
    images, extra, mask = _input(args, loaded)
    explanation = loaded.explainer(args.layer)(
        images, args.method, target=args.target, utility=args.utility, extra_inputs=extra)
    label = loaded.classes[int(explanation.target)] if loaded.classes else str(int(explanation.target))
    figure, ax = plt.subplots(figsize=(4, 4))
    viz.overlay(ax, loaded.normalization.denormalize(images[0]), explanation.saliency[0],
                title=f"{args.method} on {args.model}: {label}", contour=mask)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out} (class {label!r}, score {explanation.score.item():.3f}, "
          f"local-accuracy gap {explanation.local_accuracy_gap.item():.2e})")
    return 0


def _input(args: argparse.Namespace, loaded: zoo.Loaded) -> tuple[torch.Tensor, tuple, torch.Tensor | None]:
    """The image batch of one, the fixed extra inputs (a VQA question) and the true mask when known."""
    device = model_device(loaded.model)
    if args.image is not None:
        if loaded.name == "vqa-basic":
            raise SystemExit("vqa-basic needs a question: explain a generated scene (--index) instead")
        size = data.IMAGE_SIZE if loaded.name in zoo.SPECS else 224
        image, _ = data.load_image(args.image, size, loaded.normalization)
        return image[None].to(device), (), None
    if loaded.name == "vqa-basic":
        scenes = data.make_vqa_scenes(args.index + 1, seed=0)
        print("question:", data.QUESTION_VOCABULARY.decode(scenes.questions[args.index]))
        return (scenes.images[args.index:args.index + 1].to(device),
                (scenes.questions[args.index:args.index + 1].to(device),), scenes.evidence_masks[args.index])
    shapes = data.make_shape_scenes(args.index + 1, seed=0)
    return shapes.images[args.index:args.index + 1].to(device), (), shapes.masks[args.index]


def reproduce_command(argv: Sequence[str]) -> int:
    """The papers' tables on the embedded benchmark (see ``cam_lib.reproduce``)."""
    from . import reproduce
    return reproduce.main(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"explain": explain_command, "reproduce": reproduce_command}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand: ``explain`` or ``reproduce``."""
    parser = argparse.ArgumentParser(prog="python -m cam_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args.arguments)


if __name__ == "__main__":
    raise SystemExit(main())

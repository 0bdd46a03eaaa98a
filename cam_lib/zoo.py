"""The models the book explains, trained by this project, and a loader for torchvision classifiers.

- ``shapes-vgg``: conv blocks, then max-pool and three fully connected layers (a *nonlinear* head,
  where LIFT-CAM only approximates the Shapley values).
- ``shapes-resnet``: residual blocks, global average pooling and one linear layer (a *linear* head,
  where LIFT-CAM is exact).
- ``lookalike-vgg``, ``lookalike-resnet``: the same two architectures on the look-alike scenes (twenty
  confusable classes), about as sure of themselves as ImageNet classifiers (``calibration``): the default
  benchmark of ``reproduce``. The shape models are saturated (median true-class probability above 0.998).
- ``vqa-basic``: the LIFT-CAM paper's VQA model at small scale (CNN -> linear -> L2-normalise;
  embedding -> tanh -> 2-layer LSTM -> states -> tanh -> linear; element-wise product fusion). Its
  convolutions are pretrained on the scenes, then kept fixed, as the paper's ImageNet VGG was.

Train with ``python -m cam_lib.zoo train NAME`` (seeded, 8-12 minutes on 2 CPU cores); the weights
and the training log are committed in ``cam_lib/weights/``. ``load(NAME)`` returns the model in eval
mode with the name of its explained layer and its preprocessing. ``load("torchvision:resnet50")``
reads pretrained weights from the torch hub cache only, never from the network.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import data
from .explain import Explainer
from .runtime import device as default_device
from .runtime import model_device

WEIGHTS = Path(__file__).with_name("weights")
HELD_OUT_SEED = 7  # never used for training data: training sets use seeds 1000 and up
VALIDATION_SEED = 5  # the look-alike world's difficulty was tuned on these scenes
TARGET_SEED = 11     # the confidence targets are checked on these, never seen while tuning or training
BATCH = 64


def conv_block(inputs: int, outputs: int) -> list[nn.Module]:
    """3x3 convolution, batch norm, ReLU: the unit every model here is built from."""
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


def vgg_features(width: int = 64) -> nn.Sequential:
    """64x64 -> ``width`` maps of 8x8; the last module (a ReLU, ``features.14``) is the explained layer.

    The first convolution sees full resolution (thin stripes tell the textures apart) but has only
    12 channels, so training takes minutes on a CPU.
    """
    return nn.Sequential(*conv_block(3, 12), nn.MaxPool2d(2), *conv_block(12, width // 2), nn.MaxPool2d(2),
                         *conv_block(width // 2, width), nn.MaxPool2d(2), *conv_block(width, width))


class ShapesVGG(nn.Module):
    """VGG-style classifier: features, max-pool, Linear-ReLU-Dropout-Linear-ReLU-Linear."""

    def __init__(self, classes: int = len(data.SHAPE_CLASSES), width: int = 64):
        super().__init__()
        self.features = vgg_features(width)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(width * 16, 128), nn.ReLU(), nn.Dropout(0.3),
                                        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(images)), 1))


class Residual(nn.Module):
    """``ReLU(x' + conv(conv(x)))`` with a 1x1 projection ``x'`` when the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs),
                                  nn.ReLU(), nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = (nn.Identity() if stride == 1 and inputs == outputs else
                         nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)))
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.shortcut(x) + self.body(x))


class ShapesResNet(nn.Module):
    """ResNet-style classifier: stem, three residual stages down to 8x8, global average pooling, one linear layer."""

    def __init__(self, classes: int = len(data.SHAPE_CLASSES), width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(*conv_block(3, 12), nn.MaxPool2d(2), *conv_block(12, width // 4))
        self.layer1 = Residual(width // 4, width // 4)
        self.layer2 = Residual(width // 4, width // 2, stride=2)
        self.layer3 = Residual(width // 2, width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, images: Tensor) -> Tensor:
        maps = self.layer3(self.layer2(self.layer1(self.stem(images))))
        return self.fc(torch.flatten(self.avgpool(maps), 1))


class BasicVQA(nn.Module):
    """The basic VQA model (LIFT-CAM paper, sec. 5) at small scale: ``forward(image, question) -> answer logits``."""

    def __init__(self, answers: int = len(data.ANSWER_VOCABULARY), words: int = len(data.QUESTION_VOCABULARY),
                 width: int = 64, hidden: int = 128, embedding: int = 64):
        super().__init__()
        self.width = width
        self.features = vgg_features(width)
        self.pool = nn.MaxPool2d(2)
        self.image_fc = nn.Sequential(nn.Linear(width * 16, 256), nn.ReLU(), nn.Linear(256, hidden))
        self.embed = nn.Embedding(words, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, hidden // 2, num_layers=2, batch_first=True)
        self.question_fc = nn.Linear(2 * 2 * (hidden // 2), hidden)
        self.classifier = nn.Sequential(nn.Tanh(), nn.Dropout(0.2), nn.Linear(hidden, hidden), nn.Tanh(),
                                        nn.Dropout(0.2), nn.Linear(hidden, answers))

    def forward(self, images: Tensor, questions: Tensor) -> Tensor:
        """Answer logits: the classifier of the element-wise product of image and question vectors."""
        return self.classifier(self.picture(images) * self.question(questions))

    def picture(self, images: Tensor) -> Tensor:
        """The image vector of the pooled maps, one 4 x 4 cell per cell of the scene's grid."""
        return self.image_vector(self.pool(self.features(images)))

    def image_vector(self, cells: Tensor) -> Tensor:
        """Fully connected layers, L2-normalised as in the paper, then scaled to unit-size entries: at
        ``1/sqrt(hidden)`` the product fusion passes almost no gradient to the image side."""
        picture = self.image_fc(torch.flatten(cells, 1))
        return picture / picture.norm(dim=1, keepdim=True).clamp(min=1e-6) * picture.shape[1] ** 0.5

    def question(self, questions: Tensor) -> Tensor:
        """The question vector: both LSTM layers' final hidden and cell states, tanh, linear.
        Questions are padded on the left, so the final states follow the last word."""
        _, (hidden, cell) = self.lstm(torch.tanh(self.embed(questions)))
        states = torch.cat([hidden, cell], 0).permute(1, 0, 2).flatten(1)
        return self.question_fc(torch.tanh(states))


@dataclass
class Spec:
    """How to build, train and explain one model of the zoo."""

    build: Callable[[], nn.Module]
    layer: str
    normalization: data.Normalization
    classes: tuple[str, ...]
    epochs: int
    train_size: int
    description: str
    world: str = "shapes"  # the scenes it learns from: a key of WORLDS
    monitor_seed: int = HELD_OUT_SEED  # the scenes the training log scores after every epoch
    lr: float = 4e-3
    pretrain_epochs: int = 0  # VQA: epochs teaching the image encoder to see the scene first
    frozen: tuple[str, ...] = ()  # modules kept as pretraining left them (weights and batch-norm statistics)


WORLDS: dict[str, Callable[[int, int], object]] = {
    "shapes": data.make_shape_scenes, "lookalike": data.make_lookalike_scenes, "vqa": data.make_vqa_scenes,
}

SPECS: dict[str, Spec] = {
    "shapes-vgg": Spec(ShapesVGG, "features.14", data.SHAPES_NORMALIZATION, data.SHAPE_CLASSES, 24, 6000,
                       "VGG-style, nonlinear head (max-pool + 3 fully connected layers)"),
    "shapes-resnet": Spec(ShapesResNet, "layer3", data.SHAPES_NORMALIZATION, data.SHAPE_CLASSES, 24, 6000,
                          "ResNet-style, linear head (global average pooling + 1 linear layer)"),
    "lookalike-vgg": Spec(lambda: ShapesVGG(len(data.LOOKALIKE_CLASSES)), "features.14",
                          data.LOOKALIKE_NORMALIZATION, data.LOOKALIKE_CLASSES, 24, 6000,
                          "VGG-style, nonlinear head, on the 20 look-alike classes", world="lookalike",
                          monitor_seed=VALIDATION_SEED),
    "lookalike-resnet": Spec(lambda: ShapesResNet(len(data.LOOKALIKE_CLASSES)), "layer3",
                             data.LOOKALIKE_NORMALIZATION, data.LOOKALIKE_CLASSES, 24, 6000,
                             "ResNet-style, linear head, on the 20 look-alike classes", world="lookalike",
                             monitor_seed=VALIDATION_SEED),
    "vqa-basic": Spec(BasicVQA, "features.14", data.VQA_NORMALIZATION, tuple(data.ANSWER_VOCABULARY.tokens), 40,
                      6000, "basic VQA: CNN + LSTM, element-wise product fusion", world="vqa", lr=3e-3,
                      pretrain_epochs=20, frozen=("features",)),
}


@dataclass
class Loaded:
    """A model ready to explain: eval mode, the explained layer's name, the preprocessing and metadata."""

    name: str
    model: nn.Module
    layer: str
    normalization: data.Normalization
    classes: tuple[str, ...]
    info: dict = field(default_factory=dict)
    reshape: str | None = None  # how the layer's output reads as maps (``explain(..., reshape=...)``)

    def explainer(self, layer: str | None = None) -> Explainer:
        """A new ``Explainer`` of this model at ``layer`` (default its own), reading it with its ``reshape``."""
        return Explainer(self.model, layer or self.layer, reshape=self.reshape)


def load(name: str, device: torch.device | None = None) -> Loaded:
    """A zoo model with its committed weights, or ``"torchvision:NAME"`` from the torch hub cache."""
    device = device or default_device()
    if name.startswith("torchvision:"):
        return _load_torchvision(name.split(":", 1)[1], device)
    if name not in SPECS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(SPECS)} or 'torchvision:<name>'")
    spec, path = SPECS[name], WEIGHTS / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}; train them with: python -m cam_lib.zoo train {name}")
    model = spec.build()
    model.load_state_dict({k: v.float() for k, v in torch.load(path, map_location="cpu").items()})
    info = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    return Loaded(name, model.to(device).eval(), spec.layer, spec.normalization, spec.classes, info)


def loaded(name: str, device: torch.device | None = None) -> Loaded:
    """``load(name, device)`` once per process: widgets and chapters that ask again get the same model."""
    return _loaded(name, torch.device(device or default_device()))


def explainer(name: str, layer: str | None = None, device: torch.device | None = None) -> Explainer:
    """An ``Explainer`` of the ``loaded`` model at ``layer`` (default its own), made once: the cut is traced
    once per (model, layer)."""
    device = torch.device(device or default_device())
    return _explainer(name, layer or _loaded(name, device).layer, device)


@cache
def _loaded(name: str, device: torch.device) -> Loaded:
    return load(name, device)


@cache
def _explainer(name: str, layer: str, device: torch.device) -> Explainer:
    return _loaded(name, device).explainer(layer)


def _load_torchvision(name: str, device: torch.device) -> Loaded:
    """Pretrained torchvision weights, if (and only if) their file is already in the hub cache."""
    import torchvision
    weights = torchvision.models.get_model_weights(name).DEFAULT
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not checkpoint.exists():
        raise FileNotFoundError(f"pretrained weights for {name} are not on disk and cam_lib never downloads; "
                                f"put {Path(weights.url).name} at {checkpoint} (from {weights.url})")
    model = torchvision.models.get_model(name)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    return Loaded(f"torchvision:{name}", model.to(device).eval(), torchvision_layer(model),
                  data.IMAGENET_NORMALIZATION, tuple(weights.meta["categories"]), {"weights": str(checkpoint)},
                  torchvision_reshape(model))


TORCHVISION_LAYERS = {  # family -> its last block of spatial maps, as the grad-cam package's README advises
    "ResNet": "layer4", "DenseNet": "features.norm5", "GoogLeNet": "inception5b", "Inception3": "Mixed_7c",
    "ShuffleNetV2": "conv5",
}
TORCHVISION_LAST_BLOCK_OF = {  # family -> the container whose last child is that block
    "EfficientNet": "features", "MobileNetV2": "features", "MobileNetV3": "features", "ConvNeXt": "features",
    "SqueezeNet": "features", "SwinTransformer": "features", "MNASNet": "layers", "RegNet": "trunk_output",
    "MaxVit": "blocks",
}
TORCHVISION_RESHAPE = {"VisionTransformer": "vit", "SwinTransformer": "channels-last"}


def torchvision_layer(model: nn.Module) -> str:
    """The conventional CAM layer of a torchvision classifier: its last block of spatial maps.

    VGG and AlexNet: the last ReLU before the final max-pool. ViT: the first LayerNorm of the last encoder
    block (``ln_1``), read with ``reshape="vit"``; the block's own output would reach the logits only
    through the class token, which the ViT layout holds fixed, so its game would be null. Swin's stages
    need ``reshape="channels-last"`` (``torchvision_reshape``).
    """
    family = _family(model, {*TORCHVISION_LAYERS, *TORCHVISION_LAST_BLOCK_OF, "VGG", "AlexNet", "VisionTransformer"})
    if family in TORCHVISION_LAYERS:
        return TORCHVISION_LAYERS[family]
    if family in TORCHVISION_LAST_BLOCK_OF:
        return _last_child(model, TORCHVISION_LAST_BLOCK_OF[family])
    if family == "VisionTransformer":
        return f"{_last_child(model, 'encoder.layers')}.ln_1"
    if family in ("VGG", "AlexNet"):
        return _last_child(model, "features", nn.ReLU)
    raise ValueError(f"no conventional CAM layer known for {type(model).__name__}; "
                     "pass one of cam_lib.spatial_layers(model, images)")


def torchvision_reshape(model: nn.Module) -> str | None:
    """The ``reshape`` a torchvision classifier's blocks need: ``"vit"``, ``"channels-last"`` (Swin) or None."""
    family = _family(model, set(TORCHVISION_RESHAPE))
    return TORCHVISION_RESHAPE[family] if family else None


def _family(model: nn.Module, families: set[str]) -> str | None:
    """The first class in the model's class hierarchy named in ``families`` (subclasses count as their family)."""
    return next((cls.__name__ for cls in type(model).__mro__ if cls.__name__ in families), None)


def _last_child(model: nn.Module, container: str, kind: type[nn.Module] = nn.Module) -> str:
    """The name of the last direct child of ``container`` that is a ``kind``."""
    children = [name for name, child in model.get_submodule(container).named_children() if isinstance(child, kind)]
    return f"{container}.{children[-1]}"


def scenes(model_name: str, size: int, seed: int):
    """``size`` scenes of the world a zoo model was trained on (``ShapeScenes`` or ``VQAScenes``)."""
    return WORLDS[SPECS[model_name].world](size, seed)


def _batches(model_name: str, size: int, seed: int) -> tuple[Tensor, ...]:
    """Inputs and labels of a generated data set: (images, labels) or (images, questions, answers)."""
    made = scenes(model_name, size, seed)
    if isinstance(made, data.VQAScenes):
        return made.images, made.questions, made.answers
    return made.images, made.labels


def accuracy(model: nn.Module, tensors: tuple[Tensor, ...], batch_size: int = 500) -> float:
    """Fraction of correct predictions (the last tensor holds the labels)."""
    model.eval()
    device = model_device(model)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(tensors[0]), batch_size):
            chunk = [t[start:start + batch_size].to(device) for t in tensors]
            correct += (model(*chunk[:-1]).argmax(1) == chunk[-1]).sum().item()
    return correct / len(tensors[0])


def true_class_probabilities(model: nn.Module, tensors: tuple[Tensor, ...], batch_size: int = 500) -> Tensor:
    """``softmax(model(inputs))[label]`` and the predicted class's probability, ``[N, 2]`` (the last tensor
    holds the labels)."""
    model.eval()
    device = model_device(model)
    found = []
    with torch.no_grad():
        for start in range(0, len(tensors[0]), batch_size):
            *inputs, labels = [t[start:start + batch_size].to(device) for t in tensors]
            probabilities = model(*inputs).softmax(1)
            found.append(torch.stack([probabilities.gather(1, labels[:, None])[:, 0],
                                      probabilities.amax(1)], 1).cpu())
    return torch.cat(found)


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): ``sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)|`` over equal-width bins
    of the predicted class's probability."""
    which = (confidence * bins).long().clamp(max=bins - 1)
    gaps = torch.zeros(bins).index_add_(0, which, correct.float() - confidence)
    return float(gaps.abs().sum() / len(confidence))


def calibration(name: str, size: int = 1000, seed: int = TARGET_SEED) -> dict:
    """How sure a zoo model is on ``size`` fresh scenes: top-1 accuracy, the median true-class probability,
    the share of scenes above 0.99 and the expected calibration error. ImageNet classifiers sit at about
    70-80 % accuracy with their confidence spread out; the shape models sit at 99-100 % and 0.999."""
    loaded = load(name)
    tensors = _batches(name, size, seed)
    probabilities = true_class_probabilities(loaded.model, tensors)
    correct = probabilities[:, 0] == probabilities[:, 1]
    return {"model": name, "seed": seed, "scenes": size, "accuracy": float(correct.float().mean()),
            "median_true_class_probability": float(probabilities[:, 0].median()),
            "above_0.99": float((probabilities[:, 0] > 0.99).float().mean()),
            "ece": expected_calibration_error(probabilities[:, 1], correct)}


def one_cycle(parameters, lr: float, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle schedule peaking at ``lr``: the optimiser of every training stage here."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)


def scene_layout(scenes: data.VQAScenes) -> Tensor:
    """``[N, 16]`` what sits in each cell of the 4 x 4 grid: 0 nothing, ``1 + shape * colours + colour``."""
    cells = (scenes.object_centres * data._GRID // data.IMAGE_SIZE).long().clamp(0, data._GRID - 1)
    cell = cells[..., 0] + data._GRID * cells[..., 1]  # [N, objects]
    present = scenes.object_shapes >= 0
    content = torch.where(present, 1 + scenes.object_shapes * len(data.VQA_COLOURS) + scenes.object_colours, 0)
    layout = torch.zeros(len(cell), data._GRID ** 2, dtype=torch.long)
    return layout.scatter_add_(1, torch.where(present, cell, 0), content)  # absent objects add 0 to cell 0


def scene_counts(scenes: data.VQAScenes) -> Tensor:
    """``[N, shapes * colours]`` how many objects of each (shape, colour) pair a scene holds."""
    return F.one_hot(scene_layout(scenes), 1 + len(data.VQA_SHAPES) * len(data.VQA_COLOURS))[..., 1:].sum(1).float()


def pretrain_encoder(model: BasicVQA, epochs: int, size: int, seed: int) -> list[float]:
    """Teach the image encoder to see the scene before it meets questions (the paper's encoder was an
    ImageNet-pretrained VGG). Two linear probes, trained with it and then thrown away:

    - a 1x1 convolution on the pooled 4 x 4 maps names what sits in each grid cell (cross-entropy),
      so the convolutions learn to recognise every shape in every colour wherever it is;
    - a linear map of the image vector counts each (shape, colour) pair (squared error), so the fully
      connected layers learn a summary of the scene that the product fusion can gate by question.

    From scratch, the model settles on answering from the question alone (about 35 %).
    """
    classes = 1 + len(data.VQA_SHAPES) * len(data.VQA_COLOURS)
    cell_probe = nn.Conv2d(model.width, classes, 1)
    count_probe = nn.Linear(model.question_fc.out_features, classes - 1)
    parameters = [*model.features.parameters(), *model.image_fc.parameters(),
                  *cell_probe.parameters(), *count_probe.parameters()]
    optimizer, schedule = one_cycle(parameters, 4e-3, epochs * -(-size // BATCH))
    log = []
    for epoch in tqdm(range(epochs), desc="pretrain the image encoder"):
        scenes = data.make_vqa_scenes(size, 50_000 + seed * 100 + epoch)
        layout, counts = scene_layout(scenes), scene_counts(scenes)
        model.train()
        for batch in torch.randperm(size).split(BATCH):
            cells = model.pool(model.features(scenes.images[batch]))  # [B, K, 4, 4]
            contents = cell_probe(cells).flatten(2).transpose(1, 2)    # [B, 16, classes]
            loss = (F.cross_entropy(contents.flatten(0, 1), layout[batch].flatten())
                    + F.mse_loss(count_probe(model.image_vector(cells)), counts[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        log.append(round(loss.item(), 4))
    return log


def train(name: str, epochs: int | None = None, out: Path = WEIGHTS, smoke: bool = False, seed: int = 0) -> dict:
    """Train a zoo model on fresh scenes each epoch; save weights (float16), log (CSV) and summary (JSON)."""
    spec = SPECS[name]
    torch.manual_seed(seed)
    model = spec.build()
    epochs = 1 if smoke else epochs or spec.epochs
    size = 256 if smoke else spec.train_size
    start = time.time()
    pretrain_losses = []
    if spec.pretrain_epochs:
        assert isinstance(model, BasicVQA), f"only the VQA model pretrains its encoder, not {name}"
        pretrain_losses = pretrain_encoder(model, 1 if smoke else spec.pretrain_epochs, size, seed)
    frozen = [model.get_submodule(module) for module in spec.frozen]
    for module in frozen:
        module.requires_grad_(False)
    log = []
    optimizer, schedule = one_cycle([p for p in model.parameters() if p.requires_grad], spec.lr,
                                    epochs * -(-size // BATCH))
    held_out = _batches(name, 256 if smoke else 1000, spec.monitor_seed)
    for epoch in tqdm(range(epochs), desc=f"train {name}"):
        tensors = _batches(name, size, 1000 + seed * 100 + epoch)  # new scenes every epoch
        model.train()
        for module in frozen:
            module.eval()
        losses, correct = [], 0
        for batch in torch.randperm(size).split(BATCH):
            *inputs, labels = (t[batch] for t in tensors)
            logits = model(*inputs)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            correct += (logits.argmax(1) == labels).sum().item()
        probabilities = true_class_probabilities(model, held_out)
        log.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), "train_accuracy": correct / size,
                    "held_out_accuracy": float((probabilities[:, 0] == probabilities[:, 1]).float().mean()),
                    "held_out_median_p": float(probabilities[:, 0].median()), "seconds": time.time() - start})
        tqdm.write(str(log[-1]))
    model.requires_grad_(True)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, out / f"{name}.pt")
    pd.DataFrame(log).to_csv(out / f"{name}.csv", index=False)
    summary = {"name": name, "held_out_accuracy": log[-1]["held_out_accuracy"], "held_out_seed": spec.monitor_seed,
               "held_out_size": len(held_out[0]), "epochs": epochs, "train_size_per_epoch": size, "seed": seed,
               "train_seconds": round(time.time() - start, 1), "layer": spec.layer, "description": spec.description}
    if pretrain_losses:
        summary.update(pretrain_losses=pretrain_losses, frozen=list(spec.frozen))
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    """``python -m cam_lib.zoo train NAME [--epochs E] [--smoke]``."""
    parser = argparse.ArgumentParser(prog="python -m cam_lib.zoo", description="Train the book's models.")
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train", help="train a model and save its weights and log")
    trainer.add_argument("name", choices=list(SPECS))
    trainer.add_argument("--epochs", type=int)
    trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--smoke", action="store_true", help="a few steps into a temporary folder (for CI)")
    trainer.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp()) if args.smoke else args.out
    print(json.dumps(train(args.name, args.epochs, out, args.smoke, args.seed), indent=2))


if __name__ == "__main__":
    main()

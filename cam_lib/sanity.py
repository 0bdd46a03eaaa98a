"""Sanity checks (Adebayo et al. 2018): does a method's map depend on the model's parameters?

*Cascading model-parameter randomisation* re-initialises the model's parameter blocks one by one, from
the output back to the input, and compares each method's map with the trained model's map by Spearman
rank correlation and SSIM. A map that stays the same while the layers it claims to explain become
random explains the features, not the decision.

A *block* is a module that holds parameters of its own (a convolution, a linear layer, an embedding,
an LSTM), together with the normalisation layer (batch, layer, group or instance norm) that runs right
after it. Blocks are ordered by one forward pass, so a residual block's shortcut and body count in the
order they run; a module that holds parameters and has children (a ViT's class token, attention's input
projection) counts where it starts, since it reads its own parameters first. A block is in the *head* when it
runs after the explained layer.

>>> table = cascade(model, images, "layer4", ["gradcam", "lift"])  # doctest: +SKIP
>>> cam_lib.metrics.summarise(table)     # doctest: +SKIP
>>> flag_survivors(table)                # doctest: +SKIP
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .explain import Explainer
from .layout import Reshape
from .metrics import pearson, summarise
from .runtime import model_device
from .split import forward_events, resolve_layer

NORMALISATIONS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
SURVIVAL_THRESHOLD = 0.5
COLUMNS = ("method", "step", "block", "part", "image", "metric", "value")


@dataclass(frozen=True)
class Block:
    """Modules re-initialised together in one step of the cascade; ``name`` is the first one's.

    ``recurse``: with their submodules (a name the caller gave, such as ``"layer4"``), or only the parameters
    each module holds itself (the blocks ``parameter_blocks`` finds, one per parameter owner).
    """

    name: str
    modules: tuple[str, ...]
    in_head: bool
    recurse: bool = True


# ---------------------------------------------------------------------------------------------
# How similar are two maps?
# ---------------------------------------------------------------------------------------------

def ranks(values: Tensor) -> Tensor:
    """Ranks 1..N along the last dim of ``[B, N]``, tied values sharing their average rank."""
    ordered, order = values.sort(dim=-1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.cumsum(-1) - 1                      # tie group of each sorted position
    positions = torch.arange(1, values.shape[-1] + 1, device=values.device, dtype=torch.float64)
    positions = positions.expand_as(ordered)
    total = torch.zeros_like(positions).scatter_add_(-1, group, positions)
    count = torch.zeros_like(positions).scatter_add_(-1, group, torch.ones_like(positions))
    return torch.empty_like(positions).scatter_(-1, order, (total / count.clamp(min=1)).gather(-1, group))


def spearman(first: Tensor, second: Tensor) -> Tensor:
    """Spearman rank correlation of maps ``[B, H, W]`` per image: Pearson of the (average) ranks;
    0 where either map is constant (a blank map ranks nothing)."""
    _check_pair(first, second)
    return pearson(ranks(first.flatten(1)), ranks(second.flatten(1))).to(first.dtype)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 1-D Gaussian ``exp(-x^2 / 2 sigma^2)``, ``x = -(size // 2) .. size // 2``."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    window = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return window / window.sum()


def ssim(first: Tensor, second: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Mean structural similarity (Wang et al. 2004) of maps ``[B, H, W]`` per image.

    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``,
    ``C_i = (k_i L)^2``: local moments under a Gaussian window (population covariance), averaged over
    the positions where the whole window fits in the map. This is scikit-image's ``structural_similarity``
    with ``gaussian_weights=True, use_sample_covariance=False, data_range=1``.
    """
    _check_pair(first, second)
    if min(first.shape[-2:]) < window:
        raise ValueError(f"maps of {tuple(first.shape[-2:])} are smaller than the {window}x{window} window")
    weights = gaussian_window(window, sigma).to(first.device, torch.float32)
    x, y = first.float()[:, None], second.float()[:, None]
    moments = torch.cat([x, y, x * x, y * y, x * y])
    moments = F.conv2d(F.conv2d(moments, weights.view(1, 1, -1, 1)), weights.view(1, 1, 1, -1)).double()
    mu_x, mu_y, xx, yy, xy = moments.split(len(x))
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.mean((1, 2, 3)).to(first.dtype)


def _check_pair(first: Tensor, second: Tensor) -> None:
    if not isinstance(first, Tensor) or not isinstance(second, Tensor):
        raise TypeError("maps must be torch tensors [B, H, W]")
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(f"maps must be two [B, H, W] tensors of one shape; got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}")


# ---------------------------------------------------------------------------------------------
# Randomising the model
# ---------------------------------------------------------------------------------------------

def parameter_blocks(model: nn.Module, layer: str | nn.Module, images: Tensor,
                     extra_inputs: tuple = ()) -> list[Block]:
    """The model's blocks from the output back to the input, found by running one image.

    A block is in the head when it runs after the explained layer.
    """
    _, layer_module = resolve_layer(model, layer)
    order = _call_order(model, layer_module, images, extra_inputs)
    modules = dict(model.named_modules())
    blocks: list[list[str]] = []
    for name in order:
        if name is None:
            continue
        joins = (blocks and isinstance(modules[name], NORMALISATIONS)
                 and not isinstance(modules[blocks[-1][-1]], NORMALISATIONS)
                 and _after(order, name) == _after(order, blocks[-1][-1]))
        if joins:
            blocks[-1].append(name)
        else:
            blocks.append([name])
    return [Block(names[0], tuple(names), _after(order, names[0]), recurse=False) for names in reversed(blocks)]


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """Modules holding parameters of their own."""
    return {name: module for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None}


def _call_order(model: nn.Module, layer: nn.Module, images: Tensor, extra_inputs: tuple) -> list[str | None]:
    """Names of the parameter-owning modules as their forward passes end (a module with children: as it
    starts), first call only; ``None`` marks where the explained layer's forward ends."""
    if next(model.parameters(), None) is None:
        raise ValueError("the model has no parameters to randomise")
    device = model_device(model)
    events = forward_events(model, layer, images[:1].to(device), tuple(extra[:1].to(device) for extra in extra_inputs),
                            _owners(model), _has_children)
    order = list(dict.fromkeys(events))
    if None not in order:
        raise ValueError("the explained layer never ran in the model's forward pass")
    return order


def _has_children(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def _after(order: list[str | None], name: str) -> bool:
    """Does module ``name`` first run after the explained layer?"""
    return order.index(name) > order.index(None)


def _resolve_blocks(model: nn.Module, layer: str | nn.Module, images: Tensor, extra_inputs: tuple,
                    blocks: Sequence[str | Sequence[str] | Block] | None) -> list[Block]:
    """Found blocks, or the caller's names (top first; a name may be a container) checked and placed."""
    if blocks is None:
        return parameter_blocks(model, layer, images, extra_inputs)
    _, layer_module = resolve_layer(model, layer)
    order = _call_order(model, layer_module, images, extra_inputs)
    modules, resolved = dict(model.named_modules()), []
    for block in blocks:
        if isinstance(block, Block):
            resolved.append(block)
            continue
        names = (block,) if isinstance(block, str) else tuple(block)
        missing = [name for name in names if name not in modules or name == ""]
        if missing:
            raise ValueError(f"model has no modules {missing}; blocks must name model.named_modules()")
        owners = [f"{name}.{inner}".strip(".") for name in names for inner in _owners(modules[name])]
        ran = [owner for owner in owners if owner in order]
        if not ran:
            raise ValueError(f"block {names} holds no parameters used in the forward pass")
        resolved.append(Block(names[0], names, all(_after(order, owner) for owner in ran)))  # all in the head
    return resolved


def reinitialise(model: nn.Module, block: Block, seed: int) -> None:
    """Re-initialise ``block`` of ``model`` in place, seeded by ``seed``; the global random state is left as it
    was. A module's ``reset_parameters()`` draws its parameters as at initialisation; the parameters of a module
    without one (a ViT's class token) are redrawn from a normal with the trained values' mean and spread."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        for name in block.modules:
            top = model.get_submodule(name)
            for inner in top.modules() if block.recurse else (top,):
                own = list(inner.parameters(recurse=False))
                reset = getattr(inner, "reset_parameters", None)
                if callable(reset) and (block.recurse or not _has_children(inner)):
                    reset()  # batch norms also reset their running statistics
                elif own:  # no reset of its own parameters alone
                    _redraw(own)


@torch.no_grad()
def _redraw(parameters: Sequence[nn.Parameter]) -> None:
    """Random values with each parameter's mean and standard deviation (a constant stays that constant)."""
    for parameter in parameters:
        spread = parameter.std() if parameter.numel() > 1 else parameter.new_zeros(())
        mean = parameter.mean()
        parameter.normal_().mul_(spread).add_(mean)


def randomise(model: nn.Module, blocks: Sequence[Block], seed: int = 0) -> nn.Module:
    """A copy of ``model`` with ``blocks`` (the first ``j`` of a cascade) re-initialised;
    block ``i`` (0 = top) with seed ``seed + i``, as in ``cascade``."""
    randomised = copy.deepcopy(model)
    for index, block in enumerate(blocks):
        reinitialise(randomised, block, seed + index)
    return randomised


# ---------------------------------------------------------------------------------------------
# The cascade
# ---------------------------------------------------------------------------------------------

def cascade(model: nn.Module, images: Tensor, layer: str | nn.Module, methods: Sequence[str], *,
            target: int | Sequence[int] | Tensor | None = None, utility: str = "logit",
            blocks: Sequence[str | Sequence[str] | Block] | None = None, seed: int = 0,
            extra_inputs: tuple = (), options: Mapping[str, dict] | None = None, trace: bool = True,
            reshape: Reshape = None) -> pd.DataFrame:
    """Cascading model-parameter randomisation (Adebayo et al. 2018): a tidy DataFrame with
    columns ``method, step, block, part, image, metric, value``.

    Step 0 is the trained model (a copy, explained anew); at step ``j`` the blocks 1..j from the
    top are re-initialised (``randomise``), and ``part`` says whether block ``j`` is in the ``head``
    or the ``body``. ``metric``: ``spearman`` or ``ssim`` with the trained model's map (``compare``).
    Every step explains the trained model's class (``target``, default its prediction).
    ``blocks``: names or groups of names, top first (default ``parameter_blocks``); ``options``:
    keyword arguments per method; ``trace`` and ``reshape`` (a transformer's tokens) cut the layer as in
    ``Explainer``. ``model`` is never changed: the cascade works on a copy.
    """
    options = options or {}
    blocks = _resolve_blocks(model, layer, images, extra_inputs, blocks)
    trained, reference = Explainer(model, layer, trace, reshape), {}
    for method in methods:  # the trained maps, and the class every step explains
        explanation = trained(images, method, target, utility, extra_inputs=extra_inputs,
                              **options.get(method, {}))
        reference[method], target = explanation.saliency, explanation.target
    randomised, rows = copy.deepcopy(model), []
    for step in range(len(blocks) + 1):
        block = blocks[step - 1] if step else None
        if block is not None:
            reinitialise(randomised, block, seed + step - 1)
        explainer = Explainer(randomised, layer, trace, reshape)  # anew: a traced head may keep old weights' values
        for method in methods:
            saliency = explainer(images, method, target, utility, extra_inputs=extra_inputs,
                                 **options.get(method, {})).saliency
            rows.append(similarities(reference[method], saliency).assign(
                method=method, step=step, block=block.name if block else "none",
                part="none" if block is None else "head" if block.in_head else "body"))
    return pd.concat(rows, ignore_index=True)[list(COLUMNS)]


def similarities(trained: Tensor, saliency: Tensor) -> pd.DataFrame:
    """Spearman and SSIM of maps ``[B, H, W]`` with the trained maps: rows ``image, metric, value``.

    A blank (constant) trained map ranks no pixel, so Spearman against it means nothing: its image
    gets no ``spearman`` row.
    """
    ranked = (trained.flatten(1).amax(1) > trained.flatten(1).amin(1)).cpu().numpy()
    frames = [pd.DataFrame({"image": range(len(trained)), "metric": name,
                            "value": similarity(trained, saliency).double().cpu().numpy()})
              for name, similarity in (("spearman", spearman), ("ssim", ssim))]
    return pd.concat([frames[0][ranked], frames[1]], ignore_index=True)


def head_steps(table: pd.DataFrame) -> int:
    """The step at which the whole head is random (the number of head blocks) in one cascade."""
    steps = table.loc[table.part == "head", "step"]
    body = table.loc[table.part == "body", "step"]
    if steps.empty:
        raise ValueError("no step of this cascade randomises the head")
    if not body.empty and body.min() < steps.max():
        raise ValueError("head blocks must come first in the cascade (top to bottom)")
    return int(steps.max())


def flag_survivors(table: pd.DataFrame, threshold: float = SURVIVAL_THRESHOLD, level: float = 0.95,
                   n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method, the mean Spearman correlation with the trained map once the whole head is random,
    its bootstrap interval, and ``survives``: the interval's lower end is above ``threshold``, so
    the map does not depend on the head. Extra columns of ``table`` (a ``model``) group the rows.

    The default 0.5: above it, most of the map's ranking of the pixels is still the trained map's,
    although the decision it claims to explain has been replaced by a random function.
    """
    groups = [column for column in table.columns if column not in COLUMNS]
    frames = []
    for key, cascade_rows in (table.groupby(groups, sort=False) if groups else [((), table)]):
        last = head_steps(cascade_rows)
        chosen = cascade_rows[(cascade_rows.step == last) & (cascade_rows.metric == "spearman")]
        summary = summarise(chosen[["method", "image", "metric", "value"]], n_resamples, level, seed)
        key = key if isinstance(key, tuple) else (key,)
        frames.append(summary.assign(**dict(zip(groups, key)), step=last, block=chosen.block.iloc[0]))
    flags = pd.concat(frames, ignore_index=True)
    flags["survives"] = flags["low"] > threshold
    return flags[[*groups, "method", "step", "block", "mean", "low", "high", "n", "survives"]]


__all__ = ["Block", "spearman", "ssim", "ranks", "gaussian_window", "parameter_blocks", "reinitialise",
           "randomise", "cascade", "similarities", "head_steps", "flag_survivors", "SURVIVAL_THRESHOLD"]

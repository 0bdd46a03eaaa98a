"""Utilities ``u(y)``: which number of the network's outputs ``y`` a channel game pays out.

A utility is named (``"logit"``, ``"softmax"``, ``"rest"``: functions of logits ``[B, classes]`` and the
explained class ``c``) or is any differentiable function ``u(outputs) -> [B]`` of whatever the model
returns (a tensor, a tuple, torchvision segmentation's ``{"out": ..., "aux": ...}``). The factories below
make the common ones; a callable that takes a ``rows`` argument also receives, for each output row, the
image it belongs to (coalitions come in batches of one image's copies), so it can hold per-image data.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._pytree import tree_leaves

from .numerics import safe_divide

Utility = Callable[[Tensor, Tensor], Tensor]  # a named utility: (logits, target) -> [B]
OutputUtility = Callable[..., Tensor]         # a user's: outputs -> [B], or (outputs, rows) -> [B]


def logit(logits: Tensor, target: Tensor) -> Tensor:
    """Pre-softmax score, ``u(y) = y_c``: linear, so a linear head makes the game additive."""
    return logits.gather(1, target[:, None])[:, 0]


def softmax(logits: Tensor, target: Tensor) -> Tensor:
    """Probability, ``u(y) = softmax(y)_c``: saturates, so its gradient vanishes for confident predictions."""
    return logits.softmax(1).gather(1, target[:, None])[:, 0]


def rest(logits: Tensor, target: Tensor) -> Tensor:
    """Residual Softmax Target-class (ReST), ``u(y) = y_c + log softmax(y)_c``.

    Its gradient ``2 e_c - softmax(y)`` never vanishes (unlike softmax or log-softmax), and its
    Hessian is non-zero, so ShapleyCAM's second-order term matters.
    """
    return logit(logits, target) + logits.log_softmax(1).gather(1, target[:, None])[:, 0]


UTILITIES: dict[str, Utility] = {"logit": logit, "softmax": softmax, "rest": rest}


def get_utility(name: str) -> Utility:
    """Look a utility up by name, with an error that lists the choices."""
    try:
        return UTILITIES[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown utility {name!r}; choose one of {sorted(UTILITIES)}, "
                         "or pass a function outputs -> [B]") from None


def is_linear(utility: Utility) -> bool:
    """True for ``u(y) = y_c``, the one utility that commutes with every affine map."""
    return utility is logit


def tensor_leaves(outputs: Any) -> list[Tensor]:
    """The tensors in a model's outputs: the tensor itself, or those in (nested) tuples, lists and dicts."""
    return [leaf for leaf in tree_leaves(outputs) if isinstance(leaf, Tensor)]


class CallableUtility:
    """A user's ``u(outputs) -> [B]``, with a readable ``name`` and its result checked on every call."""

    def __init__(self, function: OutputUtility):
        if not callable(function):
            raise TypeError(f"utility must be a name {sorted(UTILITIES)} or a function outputs -> [B], "
                            f"not {type(function).__name__}")
        self.function = function
        self.name = str(getattr(function, "name", None) or getattr(function, "__name__", None)
                        or type(function).__name__)
        try:
            self.takes_rows = "rows" in inspect.signature(function).parameters
        except (TypeError, ValueError):  # builtins without a signature
            self.takes_rows = False

    def __call__(self, outputs: Any, rows: Tensor) -> Tensor:
        """``u`` of a batch of outputs; row ``i`` belongs to image ``rows[i]``."""
        value = self.function(outputs, rows=rows) if self.takes_rows else self.function(outputs)
        expected = len(rows)
        if isinstance(value, Tensor) and value.shape == (expected,):
            return value
        got = f"shape {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        hint = ""
        if isinstance(value, Tensor) and value.ndim == 0:
            hint = " Do not reduce over the batch: sum the other dimensions (y.flatten(1).sum(1)), not y.sum()."
        elif isinstance(value, Tensor) and value.shape[:1] == (expected,):
            hint = " Select one number per row: y[:, 0] rather than y[:, :1], or .flatten(1).sum(1)."
        raise ValueError(f"utility {self.name!r} must return one number per output row, a tensor of shape "
                         f"[B] = [{expected}]; got {got}.{hint}")

    def __repr__(self) -> str:
        return f"CallableUtility({self.name})"


def resolve(utility: str | OutputUtility) -> Utility | CallableUtility:
    """A named utility, or a callable wrapped so that its result is checked."""
    return get_utility(utility) if isinstance(utility, str) else CallableUtility(utility)


def utility_name(utility: str | OutputUtility) -> str:
    """What ``Explanation.utility`` records: the lower-case name, or the callable's ``name`` / ``__name__``."""
    return utility.lower() if isinstance(utility, str) else CallableUtility(utility).name


# ---------------------------------------------------------------------------------------------
# Ready-made utilities for other outputs than class logits
# ---------------------------------------------------------------------------------------------

def _named(function: OutputUtility, name: str) -> OutputUtility:
    function.name = name  # type: ignore[attr-defined]  # Explanation.utility shows it
    return function


def _select(outputs: Any, key: str | int | None) -> Tensor:
    """The tensor a utility reads: ``outputs[key]``; by default the tensor itself, ``outputs["out"]``
    (torchvision segmentation) or the first element of a tuple."""
    if key is not None:
        return outputs[key]
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping) and "out" in outputs:
        return outputs["out"]
    if isinstance(outputs, (tuple, list)) and outputs:
        return _select(outputs[0], None)
    raise TypeError(f"cannot tell which output to read from a {type(outputs).__name__}; pass key=...")


def _per_row(value: Tensor, rows: Tensor, batch_dims: int) -> Tensor:
    """Per-image data (a leading batch dimension beyond ``batch_dims``) indexed by each row's image."""
    return value[rows] if value.ndim > batch_dims else value


def segmentation(class_index: int, mask: Tensor | None = None, *, outputs: Any = None,
                 key: str | int | None = None) -> OutputUtility:
    """Class evidence in a region of a segmentation, ``u(y) = sum_{ij} M_ij y_{c,ij}``, logits ``y`` ``[B, C, H, W]``.

    The region ``M`` is a pixel ``mask`` (``[H, W]``, or ``[B, H, W]`` one per explained image), or the pixels
    predicted as ``c`` in ``outputs``, the model's outputs on the explained images (``M = 1[argmax_d y_d = c]``).
    The region stays fixed while coalitions change the logits, so ``u`` is linear in them and the game adds
    up like ``logit``'s: a channel's value is its share of the class-``c`` evidence inside the region.
    """
    if (mask is None) == (outputs is None):
        raise ValueError("segmentation needs exactly one of mask= (a pixel mask) and outputs= (the model's "
                         "outputs on the explained images, whose pixels predicted as the class form the mask)")
    if mask is None:
        predicted = _select(outputs, key).detach()
        mask = (predicted.argmax(1) == class_index).to(predicted)
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be [H, W] or [B, H, W]; got {list(mask.shape)}")

    def segmentation_utility(outputs: Any, rows: Tensor) -> Tensor:
        logits = _select(outputs, key)
        if logits.ndim != 4 or logits.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"segmentation utility needs logits [B, classes, H, W] with [H, W] = "
                             f"{list(mask.shape[-2:])} (the mask's); got {list(logits.shape)}")
        region = _per_row(mask.to(logits), rows, 2)
        return (logits[:, class_index] * region).flatten(1).sum(1)
    where = "mask" if outputs is None else "predicted pixels"
    return _named(segmentation_utility, f"segmentation(class {class_index}, {where})")


def output_unit(index: int = 0, key: str | int | None = None) -> OutputUtility:
    """One output unit, ``u(y) = y_i``: a regression output, or a binary model's logit (``index=0``).

    Linear like ``logit``: the game splits the predicted value itself among the channels.
    """
    def output_unit_utility(outputs: Any) -> Tensor:
        values = _select(outputs, key)
        return values.reshape(len(values), -1)[:, index]
    return _named(output_unit_utility, f"output {index}")


def cosine_similarity(reference: Tensor, key: str | int | None = None) -> OutputUtility:
    """Similarity of an embedding to a reference, ``u(y) = <y, r> / (|y| |r|)``, ``y`` flattened per row.

    ``reference`` ``r``: ``[D]``, or ``[B, D]`` one per explained image. Answers "which channels make this
    image look like that one" (retrieval, re-identification); bounded in [-1, 1] and scale-free.
    """
    def cosine_utility(outputs: Any, rows: Tensor) -> Tensor:
        embedding = _select(outputs, key).flatten(1)
        target = _per_row(reference.to(embedding), rows, 1)
        return F.cosine_similarity(embedding, target.expand_as(embedding), dim=1)
    return _named(cosine_utility, "cosine similarity")


def similar_classes(logits: Tensor, target: Tensor, k: int = 3) -> Tensor:
    """The ``k`` classes whose logits are closest to the target's, ``[B, k]`` (Finer-CAM's references)."""
    distance = (logits - logits.gather(1, target[:, None])).abs()
    distance = distance.scatter(1, target[:, None], float("inf"))  # never the target itself
    return distance.topk(k, dim=1, largest=False).indices


def finer(logits: Tensor, target: Tensor | int | None = None, k: int = 3, gamma: float = 1.0,
          weighting: str = "probability") -> OutputUtility:
    """Finer-CAM's contrast (Zhang et al. 2025), ``u(y) = sum_d w_d (y_c - gamma y_d) / sum_d w_d``.

    ``d`` runs over the ``k`` reference classes whose logits on the explained image (``logits``, the
    model's output ``[B, classes]``) are closest to the target's, as in the authors' code; ``w_d`` is
    ``softmax(y)_d`` (their ``FinerWeightedTarget``) or 1 (``weighting="uniform"``: the target logit minus
    ``gamma`` times the references' mean). ``target``: default the predicted class. The game then pays for
    evidence that separates ``c`` from the classes it is confused with, not for evidence they share.
    """
    if weighting not in ("probability", "uniform"):
        raise ValueError(f"weighting must be 'probability' or 'uniform', got {weighting!r}")
    logits = logits.detach()
    target = logits.argmax(1) if target is None else torch.as_tensor(target, device=logits.device).long()
    target = target.reshape(-1).expand(len(logits)).clone()
    references = similar_classes(logits, target, k)

    def finer_utility(outputs: Any, rows: Tensor) -> Tensor:
        y = _select(outputs, None)
        chosen, others = target[rows], references[rows]
        contrast = y.gather(1, chosen[:, None]) - gamma * y.gather(1, others)
        weights = y.softmax(1).gather(1, others) if weighting == "probability" else torch.ones_like(contrast)
        return safe_divide((weights * contrast).sum(1), weights.sum(1))
    return _named(finer_utility, f"finer(k={k}, gamma={gamma:g})")


__all__ = ["Utility", "OutputUtility", "CallableUtility", "logit", "softmax", "rest", "UTILITIES", "get_utility",
           "is_linear", "resolve", "utility_name", "tensor_leaves", "segmentation", "output_unit",
           "cosine_similarity", "similar_classes", "finer"]

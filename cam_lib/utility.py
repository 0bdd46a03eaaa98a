"""Utilities ``u(y)``: which number of the logits ``y`` a channel game pays out."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Utility = Callable[[Tensor, Tensor], Tensor]


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
        raise ValueError(f"unknown utility {name!r}; choose one of {sorted(UTILITIES)}") from None


def is_linear(utility: Utility) -> bool:
    """True for ``u(y) = y_c``, the one utility that commutes with every affine map."""
    return utility is logit


__all__ = ["Utility", "logit", "softmax", "rest", "UTILITIES", "get_utility", "is_linear"]

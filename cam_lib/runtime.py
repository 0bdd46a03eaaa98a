"""Where and how big the book's experiments run: CUDA when present, quick unless asked for full size."""
from __future__ import annotations

import os

import torch

FULL_SIZE_VARIABLE = "SHAPLEY_CAMS_FULL"


def device() -> torch.device:
    """The GPU when there is one, else the CPU: every chapter runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def full_size() -> bool:
    """True when ``SHAPLEY_CAMS_FULL=1``: chapters then run at the size of the committed results.

    The default, quick mode keeps each chapter under 90 seconds on 2 CPU cores (CI and nbval).
    """
    return os.environ.get(FULL_SIZE_VARIABLE, "0") == "1"

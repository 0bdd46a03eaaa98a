"""Shapley CAMs: Class Activation Mapping read as Shapley-value explanation of the channel game."""
import importlib

from .explain import Explainer, Explanation, explain
from .game import ChannelGame
from .methods import METHODS, register
from .shapley import MAX_EXACT_PLAYERS
from .split import spatial_layers, split_model
from .utility import UTILITIES, cosine_similarity, finer, output_unit, segmentation

__all__ = ["explain", "Explainer", "Explanation", "ChannelGame", "METHODS", "register",
           "MAX_EXACT_PLAYERS", "spatial_layers", "split_model", "UTILITIES", "segmentation", "output_unit",
           "cosine_similarity", "finer"]

SUBMODULES = {"compare", "controls", "data", "fusion", "imputation", "metrics", "panels", "reproduce", "runtime",
              "sanity", "viz", "zoo"}


def __getattr__(name: str):
    """Load the benchmark, metrics and figure modules on first use (``import cam_lib`` stays light)."""
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cam_lib' has no attribute {name!r}")

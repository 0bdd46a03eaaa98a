"""Shapley CAMs: Class Activation Mapping read as Shapley-value explanation of the channel game."""
from .explain import Explainer, Explanation, explain
from .game import ChannelGame
from .methods import METHODS, register
from .shapley import MAX_EXACT_PLAYERS
from .split import spatial_layers, split_model
from .utility import UTILITIES

__all__ = ["explain", "Explainer", "Explanation", "ChannelGame", "METHODS", "register",
           "MAX_EXACT_PLAYERS", "spatial_layers", "split_model", "UTILITIES"]

"""Shapley values of a game given by its coalition values: exact enumeration and random orderings.

``phi_k = sum_{S not containing k} |S|! (K - |S| - 1)! / K! * (v(S u {k}) - v(S))``.
"""
from __future__ import annotations

import torch
from torch import Tensor

MAX_EXACT_PLAYERS = 20  # 2^20 coalitions: about a million head evaluations per image


def all_coalitions(players: int, device: torch.device | str = "cpu") -> Tensor:
    """Every coalition as a 0/1 row, ``[2^K, K]``: row ``i`` holds the bits of ``i``."""
    bits = 1 << torch.arange(players, device=device)
    return (torch.arange(2 ** players, device=device)[:, None] & bits).ne(0).float()


def exact_shapley(values: Tensor, coalitions: Tensor) -> Tensor:
    """Shapley values ``[B, K]`` from the values ``[B, 2^K]`` of ``all_coalitions(K)``.

    Rewrites the sum over marginals as ``phi_k = sum_{S contains k} w_in(|S|) v(S) -
    sum_{S lacks k} w_out(|S|) v(S)`` with ``w_in(s) = (s-1)!(K-s)!/K!`` and ``w_out(s) = s!(K-s-1)!/K!``,
    two matrix products, in float64.
    """
    players = coalitions.shape[1]
    coalitions, values = coalitions.double(), values.double()
    size = coalitions.sum(1)
    log_total = torch.lgamma(torch.tensor(players + 1.0, dtype=torch.float64))
    w_in = torch.exp(torch.lgamma(size) + torch.lgamma(players - size + 1) - log_total)
    w_out = torch.exp(torch.lgamma(size + 1) + torch.lgamma(players - size) - log_total)
    w_in[size == 0], w_out[size == players] = 0.0, 0.0
    return (values * w_in) @ coalitions - (values * w_out) @ (1 - coalitions)


def random_orderings(count: int, players: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """``count`` uniformly random orderings of the players, ``[P, K]``, the same for a given seed on any device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, players, generator=generator).argsort(1).to(device)


def permutation_estimate(marginals: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over orderings ``[B, P, K] -> [B, K]`` and its standard error ``std / sqrt(P)``.

    Each ordering gives an unbiased sample of ``phi_k``, so the error falls like ``1 / sqrt(P)``.
    With one ordering the standard error is undefined (NaN).
    """
    count = marginals.shape[1]
    mean = marginals.double().mean(1)
    spread = marginals.double().std(1) if count > 1 else torch.full_like(mean, float("nan"))
    return mean.to(marginals.dtype), (spread / count ** 0.5).to(marginals.dtype)

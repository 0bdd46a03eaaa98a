"""Shapley values on hand-built games: the axioms, and the permutation estimator's convergence."""
import itertools
import math

import pytest
import torch

from cam_lib.shapley import all_coalitions, exact_shapley, permutation_estimate, random_orderings


def brute_force(value, players):
    """The textbook formula, one coalition at a time."""
    phi = [0.0] * players
    for k in range(players):
        others = [p for p in range(players) if p != k]
        for size in range(players):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
                phi[k] += weight * (value(set(subset) | {k}) - value(set(subset)))
    return torch.tensor(phi, dtype=torch.float64)


def game_values(value, players):
    coalitions = all_coalitions(players)
    sets = [set(torch.nonzero(row).flatten().tolist()) for row in coalitions]
    return torch.tensor([[value(s) for s in sets]], dtype=torch.float64), coalitions


def glove_game(s):
    """A nonlinear game: pairs of (left, right) gloves, plus a dummy player 4 and symmetric players 0, 1."""
    left, right = len(s & {0, 1}), len(s & {2, 3})
    return float(min(left, right)) ** 1.5 + 0.3 * len(s & {0, 1, 2, 3}) ** 2


def test_exact_matches_the_textbook_formula():
    values, coalitions = game_values(glove_game, 5)
    torch.testing.assert_close(exact_shapley(values, coalitions)[0], brute_force(glove_game, 5))


def test_axioms_efficiency_symmetry_dummy():
    values, coalitions = game_values(glove_game, 5)
    phi = exact_shapley(values, coalitions)[0]
    assert phi.sum().item() == pytest.approx(glove_game({0, 1, 2, 3, 4}) - glove_game(set()))
    assert phi[0].item() == pytest.approx(phi[1].item())  # symmetric players
    assert phi[4].item() == pytest.approx(0.0, abs=1e-12)  # dummy player


def test_additive_game_gives_its_weights():
    weights = torch.tensor([0.5, -1.0, 2.0, 0.0])
    values, coalitions = game_values(lambda s: sum(weights[k].item() for k in s), 4)
    torch.testing.assert_close(exact_shapley(values, coalitions)[0], weights.double())


def test_orderings_are_seeded_permutations():
    first, again = random_orderings(50, 9, seed=3), random_orderings(50, 9, seed=3)
    assert torch.equal(first, again)
    assert not torch.equal(first, random_orderings(50, 9, seed=4))
    assert torch.equal(first.sort(1).values, torch.arange(9).expand(50, 9))


def sampled(value, players, count, seed):
    """Marginals along orderings, straight from the definition (no game machinery)."""
    orderings = random_orderings(count, players, seed)
    marginals = torch.zeros(1, count, players)
    for p, ordering in enumerate(orderings.tolist()):
        coalition = set()
        for k in ordering:
            marginals[0, p, k] = value(coalition | {k}) - value(coalition)
            coalition.add(k)
    return permutation_estimate(marginals)


def test_permutation_estimate_is_unbiased_and_converges():
    truth = brute_force(glove_game, 5).float()
    errors = []
    for count in (4, 64, 1024):
        estimate, stderr = sampled(glove_game, 5, count, seed=1)
        errors.append((estimate[0] - truth).norm().item())
        assert ((estimate[0] - truth).abs() <= 5 * stderr[0] + 1e-6).all()  # within the reported error
    assert errors[2] < errors[0] / 4  # the error falls like 1/sqrt(P)
    estimate, _ = sampled(glove_game, 5, 1024, seed=1)
    assert estimate.sum().item() == pytest.approx(glove_game(set(range(5))) - glove_game(set()), rel=1e-5)


def test_one_ordering_has_undefined_error():
    _, stderr = sampled(glove_game, 4, 1, seed=0)
    assert torch.isnan(stderr).all()

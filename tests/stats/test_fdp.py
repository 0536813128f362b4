"""Tests for privaudit.stats.fdp: trade-off families, Algorithm 3 of Mahloujifar et al. 2024, GDP conversion."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from scipy import stats

from privaudit.errors import PrivauditError
from privaudit.stats.fdp import (
    ASSUMES_GAUSSIAN,
    EpsDeltaFamily,
    GaussianFamily,
    fdp_lower_bound,
    gdp_delta,
    gdp_epsilon,
    gdp_mu,
    reconstruction_slack,
)


@pytest.mark.parametrize(("mu", "expected"), [(1.0, 4.377), (2.0, 9.997)])
def test_gdp_epsilon_known_answers(mu, expected):
    # Dong, Roth, Su 2022, Cor. 2.13: mu-GDP at delta = 1e-5.
    assert gdp_epsilon(mu, 1e-5) == pytest.approx(expected, rel=1e-4)


def test_gdp_delta_matches_the_formula_at_moderate_values():
    mu, eps = 1.5, 2.0
    expected = stats.norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
    assert gdp_delta(eps, mu) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mu", [0.1, 0.5, 1.0, 3.0, 8.0])
def test_gdp_epsilon_and_delta_are_inverses(mu):
    eps = gdp_epsilon(mu, 1e-6)
    assert gdp_delta(eps, mu) == pytest.approx(1e-6, rel=1e-8)
    assert gdp_mu(eps, 1e-6) == pytest.approx(mu, rel=1e-8)


def test_gdp_epsilon_is_zero_when_delta_is_already_met():
    # delta(0) = 2 Phi(mu / 2) - 1 is below 0.1 for mu = 0.2.
    assert gdp_epsilon(0.2, 0.1) == 0.0
    assert gdp_epsilon(0.0, 1e-5) == 0.0


def test_gdp_epsilon_rejects_bad_delta():
    with pytest.raises(PrivauditError, match="delta"):
        gdp_epsilon(1.0, 0.0)


def test_eps_delta_trade_off_corners_and_symmetry():
    f = EpsDeltaFamily(delta=1e-3)
    x = np.linspace(0, 1, 101)
    y = f.trade_off(x, 1.0)
    assert y[0] == pytest.approx(1 - 1e-3)
    assert y[-1] == 0.0
    # A symmetric trade-off curve is its own inverse on [0, 1 - delta].
    inner = x[x < 1 - 1e-3]
    assert f.trade_off(f.trade_off(inner, 1.0), 1.0) == pytest.approx(inner, abs=1e-12)
    assert f.assumes is None


def test_gaussian_trade_off_is_the_normal_test():
    # G_mu(x) is the type II error of the best level-x test of N(0, 1) against N(mu, 1).
    g = GaussianFamily()
    x = np.array([0.01, 0.1, 0.5])
    expected = stats.norm.cdf(stats.norm.isf(x) - 1.3)
    assert g.trade_off(x, 1.3) == pytest.approx(expected, rel=1e-12)
    assert g.inverse_blow_up(x, 1.3) == pytest.approx(g.trade_off(1 - x, 1.3), rel=1e-12)
    assert g.assumes == ASSUMES_GAUSSIAN


def test_rejection_is_monotone_in_the_parameter():
    # What mu rejects, every smaller mu rejects too (the slack of an early rejection is any positive number).
    guesses, correct = np.array([400, 1000, 3000]), np.array([380, 900, 2400])
    rejects = [
        reconstruction_slack(GaussianFamily(), mu, m=20_000, guesses=guesses, correct=correct, alpha=1e-3) > 0
        for mu in (0.05, 0.3, 0.6, 1.2)
    ]
    assert all(np.all(a >= b) for a, b in zip(rejects, rejects[1:]))
    assert rejects[0].all() and not rejects[-1].any()


def test_half_right_rejects_nothing():
    bound, index = fdp_lower_bound(
        EpsDeltaFamily(1e-5), m=1000, guesses=np.array([500]), correct=np.array([250]), alpha=0.05
    )
    assert (bound, index) == (0.0, -1)


def test_more_correct_guesses_give_a_larger_bound():
    bounds = [
        fdp_lower_bound(GaussianFamily(), m=1000, guesses=np.array([200]), correct=np.array([v]), alpha=0.05)[0]
        for v in (150, 170, 190, 200)
    ]
    assert all(a < b for a, b in zip(bounds, bounds[1:]))


def test_bound_is_where_the_test_stops_rejecting():
    guesses, correct = np.array([300]), np.array([290])
    mu, index = fdp_lower_bound(GaussianFamily(), m=2000, guesses=guesses, correct=correct, alpha=0.05)
    assert index == 0

    def slack(param: float) -> float:
        return reconstruction_slack(GaussianFamily(), param, m=2000, guesses=guesses, correct=correct, alpha=0.05)[0]

    assert slack(mu * (1 - 1e-6)) > 0 >= slack(mu * (1 + 1e-6))


def test_gaussian_bound_is_tighter_than_eps_delta_bound():
    # For the same observation the Gaussian family (an assumption) rejects a larger eps than the (eps, delta) one.
    args = dict(m=2000, guesses=np.array([300]), correct=np.array([290]), alpha=0.05)
    eps, _ = fdp_lower_bound(EpsDeltaFamily(1e-5), **args)
    mu, _ = fdp_lower_bound(GaussianFamily(), **args)
    assert 0 < eps < gdp_epsilon(mu, 1e-5)


def _algorithm_3(inverse_blow_up, *, m: int, guesses: int, correct: int, alpha: float) -> bool:
    """Algorithm 3 of Mahloujifar et al. 2024 written out as in the paper, one hypothesis, lists and all."""
    h, r = [0.0] * (correct + 1), [0.0] * (correct + 1)
    h[correct], r[correct] = alpha * (guesses - correct) / m, alpha * correct / m
    for i in range(correct - 1, -1, -1):
        h[i] = max(h[i + 1], inverse_blow_up(r[i + 1]))
        r[i] = min(r[i + 1] + i / (guesses - i) * (h[i] - h[i + 1]), 1.0)
    return r[0] + h[0] > guesses / m  # rejects


def _scalar_inverse(family, param: float, r: float) -> float:
    return float(family.inverse_blow_up(r, param))


@pytest.mark.parametrize("family", [EpsDeltaFamily(1e-5), GaussianFamily()], ids=lambda f: f.name)
def test_vectorised_recursion_matches_the_paper_loop(family):
    guesses, correct = np.array([50, 300, 300, 1000, 2000]), np.array([45, 290, 200, 900, 1200])
    seen = set()
    for param in (0.05, 0.3, 1.0, 2.0, 4.0):
        vector = reconstruction_slack(family, param, m=4000, guesses=guesses, correct=correct, alpha=0.01) > 0
        inverse = partial(_scalar_inverse, family, param)
        loop = [_algorithm_3(inverse, m=4000, guesses=g, correct=c, alpha=0.01) for g, c in zip(guesses, correct)]
        assert vector.tolist() == loop, param
        seen.update(loop)
    assert seen == {True, False}  # the parameters span rejection and consistency

"""Tests for privaudit.stats.onerun against the known answers of Steinke, Nasr, Jagielski 2023."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special

from privaudit.errors import PrivauditError
from privaudit.stats.onerun import DEFAULT_GUESS_FRACTIONS, epsilon_lower_bound_one_run, one_run_audit, p_value


def test_known_answer_pure_dp():
    # Steinke et al. 2023: 100 correct guesses out of 100, m = 1000, p = 0.05, delta = 0 -> eps >= 3.4930.
    eps = epsilon_lower_bound_one_run(m=1000, r=100, v=100, delta=0.0, p=0.05)
    assert round(eps, 4) == 3.4930


def test_known_answer_pure_dp_closed_form():
    # With v = r and delta = 0 the p-value is q^r, so eps = logit(p^(1/r)).
    eps = epsilon_lower_bound_one_run(m=1000, r=100, v=100, p=0.05)
    assert eps == pytest.approx(special.logit(0.05 ** (1 / 100)), abs=1e-9)


def test_known_answer_approximate_dp():
    # Steinke et al. 2023, the delta > 0 procedure of their appendix: m = 1000, r = v = 600, delta = 1e-5 -> 5.2704.
    eps = epsilon_lower_bound_one_run(m=1000, r=600, v=600, delta=1e-5, p=0.05)
    assert round(eps, 4) == 5.2704


def test_delta_term_matches_hand_computation():
    # v = r = 2: the window term is max(P[B = 1] / 1, P[0 <= B < 2] / 2) for B ~ Binomial(2, q).
    q = special.expit(1.0)
    pmf1, pmf0 = 2 * q * (1 - q), (1 - q) ** 2
    expected = q**2 + 2 * 10 * 1e-3 * max(pmf1, (pmf1 + pmf0) / 2)
    assert p_value(m=10, r=2, v=2, eps=1.0, delta=1e-3) == pytest.approx(expected, rel=1e-12)


def test_no_correct_guesses_gives_zero():
    assert epsilon_lower_bound_one_run(m=100, r=50, v=0) == 0.0
    assert epsilon_lower_bound_one_run(m=100, r=0, v=0) == 0.0
    # Half right is what a coin gives: nothing is proven.
    assert epsilon_lower_bound_one_run(m=1000, r=500, v=250) == 0.0


@pytest.mark.parametrize("delta", [0.0, 1e-5])
def test_bound_monotone_in_v(delta):
    bounds = [epsilon_lower_bound_one_run(m=1000, r=200, v=v, delta=delta) for v in range(90, 201, 5)]
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))
    assert bounds[-1] > bounds[0] + 3


def test_bound_decreases_with_delta_and_confidence():
    base = epsilon_lower_bound_one_run(m=1000, r=300, v=280)
    assert epsilon_lower_bound_one_run(m=1000, r=300, v=280, delta=1e-4) < base
    assert epsilon_lower_bound_one_run(m=1000, r=300, v=280, p=0.01) < base


def test_random_scores_give_bound_near_zero():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        result = one_run_audit(rng.normal(size=1000), rng.random(1000) < 0.5, delta=1e-5)
        assert result.epsilon_lower_bound < 0.3


def test_perfect_attack_matches_direct_bound():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    scores = included + rng.normal(0, 0.01, 1000)  # every canary correctly ranked
    result = one_run_audit(scores, included, guesses=[200])
    assert (result.r, result.v, result.k_in, result.k_out) == (200, 200, 100, 100)
    assert result.p_per_guess == 0.05
    assert result.epsilon_lower_bound == epsilon_lower_bound_one_run(m=1000, r=200, v=200, p=0.05)


def test_counts_guesses_on_both_ends():
    # Scores rank canaries 0..9 from lowest to highest; canaries 7, 8, 9 and 1 are in.
    included = np.zeros(10, bool)
    included[[1, 7, 8, 9]] = True
    result = one_run_audit(np.arange(10.0), included, guesses=[5])
    # "in" on 9, 8, 7 (all right); "out" on 0, 1 (one right).
    assert (result.k_in, result.k_out, result.v) == (3, 2, 4)


def test_default_guesses_use_bonferroni():
    rng = np.random.default_rng(1)
    included = rng.random(1000) < 0.5
    result = one_run_audit(included + rng.normal(0, 0.8, 1000), included, delta=1e-5)
    assert result.guesses == tuple(round(f * 1000) for f in DEFAULT_GUESS_FRACTIONS)
    assert result.p_per_guess == pytest.approx(0.05 / len(DEFAULT_GUESS_FRACTIONS))
    assert result.epsilon_lower_bound == max(result.epsilons) > 0.5
    k = result.guesses.index(result.r)
    direct = epsilon_lower_bound_one_run(m=1000, r=result.r, v=result.v, delta=1e-5, p=result.p_per_guess)
    assert result.epsilons[k] == direct
    assert math.isfinite(json.loads(json.dumps(result.to_dict()))["epsilon_lower_bound"])


@pytest.mark.parametrize(
    "kwargs",
    [{"m": 10, "r": 11, "v": 5}, {"m": 10, "r": 5, "v": 6}, {"m": 10, "r": 5, "v": 5, "p": 0.0}],
)
def test_invalid_counts_raise(kwargs):
    with pytest.raises(PrivauditError):
        epsilon_lower_bound_one_run(**kwargs)


def test_invalid_audit_inputs_raise():
    with pytest.raises(PrivauditError, match="1-D"):
        one_run_audit(np.zeros(3), np.zeros(4, bool))
    with pytest.raises(PrivauditError, match="NaN"):
        one_run_audit(np.array([0.0, np.nan]), np.array([True, False]))
    with pytest.raises(PrivauditError, match="guesses"):
        one_run_audit(np.zeros(4), np.array([True, False, True, False]), guesses=[5])

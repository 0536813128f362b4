"""The reach of a one-run audit: the most its canaries can show, whatever the model did."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from privaudit.errors import PrivauditError
from privaudit.stats.auditor import CanaryScoreAuditor, reach


@pytest.mark.parametrize("n", [10, 50, 500])
def test_pure_dp_reach_is_the_binomial_closed_form(n):
    # Steinke, Nasr, Jagielski 2023: under eps-DP each guess is right with probability at most e^eps / (1 + e^eps),
    # so r right guesses out of r have p-value p^r. Perfect separation tests three rules (all in, the inserted ones,
    # none) at alpha / 3 each: the bound solves p^n = alpha / 3.
    assert reach(n, n, 0.05, 0.0) == pytest.approx(logit((0.05 / 3) ** (1 / n)), abs=1e-6)


def test_no_score_set_of_the_same_counts_goes_beyond_it():
    rng = np.random.default_rng(0)
    for seed in range(30):
        inserted = np.zeros(100, dtype=bool)
        inserted[rng.permutation(100)[:50]] = True
        mu = [0.0, 1.0, 3.0, 10.0][seed % 4]
        scores = rng.normal(size=100) + mu * inserted
        bounds = CanaryScoreAuditor.from_inclusion(scores, inserted).audit(0.05, 1e-5)
        assert bounds.eps_delta.epsilon <= bounds.reach + 1e-9
        assert bounds.reach == pytest.approx(reach(50, 50, 0.05, 1e-5))


def test_reach_grows_with_the_canaries_and_caps_a_hundred_far_below_eight():
    values = [reach(n, n, 0.05, 1e-5) for n in (50, 500, 5000, 50000)]
    assert values == sorted(values)
    assert values[0] < 2.6 and values[-1] > 8  # 100 canaries cannot check a claim of 8; 100,000 can


def test_reach_needs_both_sides():
    with pytest.raises(PrivauditError, match="needs an inserted and a left-out canary"):
        reach(0, 10, 0.05, 1e-5)

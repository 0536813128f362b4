"""The equal-variance Gaussian fit (an estimate, not a bound): known answers, coverage of its lower limit on honest
mechanisms, and why the fit must not give each side its own variance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from privaudit.errors import PrivauditError
from privaudit.stats.accounting import epsilon, noise_multiplier_for_epsilon
from privaudit.stats.fdp import gdp_epsilon
from privaudit.stats.gaussian_fit import LABEL, gaussian_fit_estimate
from privaudit.training.gradient_canaries import likelihood_ratio_scores

DELTA = 1e-5


def gaussian_scores(mu: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An honest mu-GDP mechanism's canaries: scores N(mu, 1) if inserted, N(0, 1) if not."""
    rng = np.random.default_rng(seed)
    inserted = rng.integers(0, 2, m).astype(bool)
    return rng.normal(size=m) + mu * inserted, inserted


def dpsgd_scores(sigma: float, q: float, steps: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dirac canaries in an honest Poisson-subsampled DP-SGD run, scored as privaudit scores its gradient canaries."""
    rng = np.random.default_rng(seed)
    inserted = rng.integers(0, 2, m).astype(bool)
    records = (rng.random((steps, m)) < q) * inserted + sigma * rng.normal(size=(steps, m))
    return likelihood_ratio_scores(records, sample_rate=q, noise_multiplier=sigma), inserted


def test_known_answer_the_noncentral_t_limit():
    # Two samples of 3 with means 2 and 0 and unit pooled variance: d = 2, t = 2 / sqrt(2/3), df = 4. The limit is
    # the noncentrality at which t is the upper 5% point, by scipy's noncentral t directly.
    scores = np.array([1.0, 2.0, 3.0, -1.0, 0.0, 1.0])
    inserted = np.array([1, 1, 1, 0, 0, 0])
    fit = gaussian_fit_estimate(scores, inserted, delta=DELTA, alpha=0.05)
    t = 2 / math.sqrt(2 / 3)
    ncp = optimize.brentq(lambda c: stats.nct.sf(t, 4, c) - 0.05, -20, t)
    assert fit.mu_lower == pytest.approx(max(0.0, ncp * math.sqrt(2 / 3)), abs=1e-8)
    assert fit.mu == pytest.approx(2 * (1 - 3 / 15))  # Hedges' J(4) = 1 - 3 / (4 * 4 - 1)
    assert fit.epsilon == pytest.approx(gdp_epsilon(fit.mu, DELTA))
    assert fit.label == LABEL == "estimate, not a bound" and fit.method == "noncentral-t"


def test_it_finds_mu_of_a_gaussian_mechanism():
    scores, inserted = gaussian_scores(1.5, 20000, seed=0)
    fit = gaussian_fit_estimate(scores, inserted, delta=DELTA)
    assert fit.mu == pytest.approx(1.5, abs=0.05) and fit.mu_lower < fit.mu
    assert fit.epsilon_lower == pytest.approx(gdp_epsilon(fit.mu_lower, DELTA))


def test_lower_limit_coverage_on_honest_gaussian_mechanisms():
    # At alpha = 5% the limit passes the true mu in about 5% of runs: not more (it is a valid limit when the scores
    # are Gaussian), and not far less (it is not vacuous). 400 runs: 3 binomial sd is 3.3%.
    mu, runs, alpha = 1.0, 400, 0.05
    above = sum(
        gaussian_fit_estimate(*gaussian_scores(mu, 1000, seed), delta=DELTA, alpha=alpha).mu_lower > mu
        for seed in range(runs)
    )
    assert 0.01 <= above / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_lower_limit_at_or_below_true_epsilon_over_20_seeds_gaussian(mu):
    # 20 seeds at a 1% level (a priori 82% that all 20 pass; at 5%, 36%: the coverage test above is the 5% check).
    true = gdp_epsilon(mu, DELTA)
    fits = [gaussian_fit_estimate(*gaussian_scores(mu, 2000, s), delta=DELTA, alpha=0.01) for s in range(20)]
    assert max(f.epsilon_lower for f in fits) <= true
    # And close to it: with 2,000 canaries d has sd 0.045, so the 1% limit sits about 0.1 below d.
    assert min(f.mu_lower for f in fits) > mu - 0.25


def test_lower_limit_at_or_below_the_accountant_on_honest_dpsgd_over_20_seeds():
    # The fixture recipe: q 0.2, 150 steps, epsilon 8 (RDP); 5,000 Dirac canaries scored by their likelihood ratio.
    q, steps = 0.2, 150
    sigma = noise_multiplier_for_epsilon(target_epsilon=8.0, delta=DELTA, sample_rate=q, steps=steps)
    accountant = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    fits = [gaussian_fit_estimate(*dpsgd_scores(sigma, q, steps, 5000, s), delta=DELTA) for s in range(20)]
    assert max(f.epsilon_lower for f in fits) <= accountant
    # The estimate is well above what the rigorous one-run bounds reach here (about 2.6-3.6): that is its use.
    assert min(f.epsilon for f in fits) > 5.0


def _delta_of(eps: float, p: tuple[float, float], q: tuple[float, float]) -> float:
    """sup_A P(A) - e^eps Q(A) for P = N(p), Q = N(q) (mean, sd): A is where the quadratic log ratio exceeds eps."""
    (m1, s1), (m0, s0) = p, q
    a = 1 / (2 * s0**2) - 1 / (2 * s1**2)
    b = m1 / s1**2 - m0 / s0**2
    c = -(m1**2) / (2 * s1**2) + m0**2 / (2 * s0**2) + math.log(s0 / s1) - eps
    big_p, big_q = stats.norm(m1, s1), stats.norm(m0, s0)

    def mass(lo: float, hi: float) -> float:
        return (big_p.cdf(hi) - big_p.cdf(lo)) - math.exp(eps) * (big_q.cdf(hi) - big_q.cdf(lo))

    disc = b * b - 4 * a * c
    if disc <= 0:
        return max(0.0, mass(-math.inf, math.inf)) if a > 0 else 0.0
    r1, r2 = sorted([(-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)])
    return mass(-math.inf, r1) + mass(r2, math.inf) if a > 0 else mass(r1, r2)


def unequal_variance_epsilon(scores: np.ndarray, inserted: np.ndarray, delta: float) -> float:
    """The epsilon at ``delta`` of N(m_in, s_in^2) against N(m_out, s_out^2), each side's variance its own."""
    p = (scores[inserted].mean(), scores[inserted].std(ddof=1))
    q = (scores[~inserted].mean(), scores[~inserted].std(ddof=1))
    gap = lambda e: max(_delta_of(e, p, q), _delta_of(e, q, p)) - delta  # noqa: E731
    hi = 1.0
    while gap(hi) > 0:
        hi *= 2
    return optimize.brentq(gap, 0.0, hi)


def test_an_unequal_variance_fit_overshoots_so_it_is_not_used():
    # On honest 1-GDP canaries the two sample variances differ only by chance, yet the unequal-variance fit's
    # quadratic log ratio puts epsilon at delta 1e-5 above the truth on most seeds; the equal-variance fit does not.
    true = gdp_epsilon(1.0, DELTA)
    unequal, equal = [], []
    for seed in range(20):
        scores, inserted = gaussian_scores(1.0, 1000, seed)
        unequal.append(unequal_variance_epsilon(scores, inserted, DELTA))
        equal.append(gaussian_fit_estimate(scores, inserted, delta=DELTA).epsilon)
    assert sum(e > true for e in unequal) >= 15 and np.median(unequal) > 1.15 * true
    assert np.median(equal) == pytest.approx(true, rel=0.15)


def test_perfect_separation_and_bad_input():
    inserted = np.array([1, 1, 0, 0])
    fit = gaussian_fit_estimate(np.array([1.0, 1.0, 0.0, 0.0]), inserted, delta=DELTA)
    assert math.isinf(fit.mu_lower) and math.isinf(fit.epsilon_lower)
    assert gaussian_fit_estimate(np.array([0.0, 0.0, 1.0, 1.0]), inserted, delta=DELTA).mu == 0.0
    with pytest.raises(PrivauditError, match="at least two"):
        gaussian_fit_estimate(np.array([1.0, 0.0, 0.0]), np.array([1, 0, 0]), delta=DELTA)
    with pytest.raises(PrivauditError, match="finite"):
        gaussian_fit_estimate(np.array([np.nan, 1.0, 0.0, 0.0]), inserted, delta=DELTA)

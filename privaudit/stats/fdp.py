"""f-DP one-run audit: Mahloujifar, Melis, Chaudhuri 2024, "Auditing f-Differential Privacy in One Run" (ICML 2025).

In a one-run audit ``m`` canaries are each inserted with probability 1/2; the auditor guesses the bit of ``c'`` of them
and gets ``c`` right. Algorithm 3 of the paper (the reconstruction argument) tells whether "``c`` of ``c'`` right" is
more than an f-DP mechanism allows at significance ``alpha``; a family of trade-off curves indexed by one parameter
then gives the largest parameter the observation rejects: the empirical lower bound.

Two families are offered:

- :class:`EpsDeltaFamily`: ``f_{eps, delta}(x) = max(0, 1 - delta - e^eps x, e^-eps (1 - delta - x))``, the trade-off
  curve of (eps, delta)-DP itself (Dong, Roth, Su 2022). Rejecting it rejects (eps, delta)-DP: a strict lower bound
  with no assumption on the mechanism.
- :class:`GaussianFamily`: ``G_mu(x) = Phi(Phi^-1(1 - x) - mu)``, the curve of mu-GDP (Dong, Roth, Su 2022). Tighter,
  but it **assumes the mechanism's trade-off curve is Gaussian**: a mechanism that is (eps, delta)-DP without being
  Gaussian can be "rejected" by it. The bound is reported as mu and as the eps of mu-GDP at a delta (their
  Corollary 2.13).

All functions are vectorised over hypotheses (numbers of guesses and family parameters), for the auditor in
:mod:`privaudit.stats.auditor`, which runs one test per threshold of the score frontier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from privaudit.errors import PrivauditError

ASSUMES_GAUSSIAN = "gaussian trade-off"


@dataclass(frozen=True)
class EpsDeltaFamily:
    """Trade-off curves ``f_{eps, delta}`` of (eps, delta)-DP at a fixed delta; the parameter is eps.

    Attributes:
        delta: the delta of the claim under test.
    """

    delta: float
    name: str = "eps-delta"
    assumes: str | None = None

    def trade_off(self, x: np.ndarray, eps: float | np.ndarray) -> np.ndarray:
        """``f_{eps, delta}(x) = max(0, 1 - delta - e^eps x, e^-eps (1 - delta - x))`` (Dong, Roth, Su 2022)."""
        x = np.asarray(x, dtype=np.float64)
        return np.maximum.reduce(
            [np.zeros_like(x), 1 - self.delta - np.exp(eps) * x, np.exp(-eps) * (1 - self.delta - x)]
        )

    def inverse_blow_up(self, r: np.ndarray, eps: float | np.ndarray) -> np.ndarray:
        """``B^-1(r) = f(1 - r)`` for the symmetric ``f``: the least mass under one neighbour of a set with mass
        ``r`` under the other, ``max(0, 1 - delta - e^eps (1 - r), e^-eps (r - delta))``."""
        return self.trade_off(1 - np.asarray(r, dtype=np.float64), eps)


@dataclass(frozen=True)
class GaussianFamily:
    """Trade-off curves ``G_mu`` of mu-GDP; the parameter is mu. Assumes a Gaussian trade-off curve."""

    name: str = "gaussian"
    assumes: str | None = ASSUMES_GAUSSIAN

    def trade_off(self, x: np.ndarray, mu: float | np.ndarray) -> np.ndarray:
        """``G_mu(x) = Phi(Phi^-1(1 - x) - mu)`` (Dong, Roth, Su 2022: the trade-off of N(0, 1) against N(mu, 1))."""
        return special.ndtr(special.ndtri(1 - np.asarray(x, dtype=np.float64)) - mu)

    def inverse_blow_up(self, r: np.ndarray, mu: float | np.ndarray) -> np.ndarray:
        """``B^-1(r) = G_mu(1 - r) = Phi(Phi^-1(r) - mu)``."""
        return special.ndtr(special.ndtri(np.asarray(r, dtype=np.float64)) - mu)


Family = EpsDeltaFamily | GaussianFamily


def reconstruction_slack(
    family: Family,
    param: float,
    *,
    m: int,
    guesses: np.ndarray,
    correct: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """``r_0 + h_0 - c' / m`` of Algorithm 3 (Mahloujifar et al. 2024) for each hypothesis: positive rejects.

    With ``tau = alpha``, the recursion starts at ``r_c = tau c / m`` and ``h_c = tau (c' - c) / m`` and runs down
    ``i = c - 1, ..., 0``::

        h_i = max(h_{i+1}, B^-1(r_{i+1}))                     # k = 2 bits: (k - 1) B^-1 = B^-1
        r_i = r_{i+1} + i / (c' - i) * (h_i - h_{i+1})

    The observation "``c`` of ``c'`` guesses right" is consistent with f-DP at level ``alpha`` if and only if
    ``r_0 + h_0 <= c' / m``. ``r`` is a probability and is capped at 1 (as jax_privacy does). Every hypothesis runs
    in one vector: once ``h`` stops moving it never moves again, and once ``r + h`` passes ``c' / m`` the test has
    rejected (both only grow), so the loop ends as soon as every hypothesis has settled.

    Args:
        family: the trade-off family.
        param: its parameter (eps or mu), the same for every hypothesis.
        m: number of canaries.
        guesses: ``c'``, guesses made, one per hypothesis.
        correct: ``c``, correct guesses among them, ``0 <= c <= c'``.
        alpha: significance level of each test.

    Returns:
        ``r_0 + h_0 - c' / m`` per hypothesis; for hypotheses that rejected early any positive value, not the final.
    """
    guesses = np.asarray(guesses, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.int64)
    r = alpha * correct / m
    h = alpha * (guesses - correct) / m
    limit = guesses / m
    i = correct - 1
    live = np.flatnonzero((i >= 0) & (r + h <= limit))
    while live.size:
        r_live, h_live, i_live = r[live], h[live], i[live]
        h_new = np.maximum(h_live, family.inverse_blow_up(r_live, param))
        r_new = np.minimum(r_live + i_live / (guesses[live] - i_live) * (h_new - h_live), 1.0)
        r[live], h[live], i[live] = r_new, h_new, i_live - 1
        keep = (h_new != h_live) & (i_live > 0) & (r_new + h_new <= limit[live])
        live = live[keep]
    return r + h - limit


def fdp_lower_bound(
    family: Family,
    *,
    m: int,
    guesses: np.ndarray,
    correct: np.ndarray,
    alpha: float,
    xtol: float = 1e-9,
) -> tuple[float, int]:
    """The largest parameter of ``family`` that some hypothesis rejects at level ``alpha``, and which one.

    Rejection is monotone in the parameter (a larger eps or mu allows more), so the supremum over all hypotheses is
    found by one bisection whose test asks "does any hypothesis reject?", each step running every hypothesis at
    once.

    Args:
        family: the trade-off family.
        m: number of canaries.
        guesses: ``c'`` per hypothesis.
        correct: ``c`` per hypothesis.
        alpha: significance level of each test (already corrected for the number of hypotheses).
        xtol: width of the final bracket on the parameter.

    Returns:
        ``(bound, index)``: the bound (0 when nothing rejects the parameter 0) and the index of the hypothesis behind
        it (-1 when the bound is 0).
    """
    guesses = np.asarray(guesses)
    correct = np.asarray(correct)
    if guesses.size == 0:
        return 0.0, -1

    def rejecting(param: float) -> np.ndarray:
        return reconstruction_slack(family, param, m=m, guesses=guesses, correct=correct, alpha=alpha) > 0

    if not rejecting(0.0).any():
        return 0.0, -1
    lo, hi = 0.0, 1.0  # invariant: some hypothesis rejects lo, none rejects hi
    while rejecting(hi).any():
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            raise PrivauditError("the f-DP bound does not converge: every parameter up to 1e4 is rejected")
    while hi - lo > xtol * max(1.0, lo):
        mid = (lo + hi) / 2
        if rejecting(mid).any():
            lo = mid
        else:
            hi = mid
    winners = np.flatnonzero(rejecting(lo))
    # Of the hypotheses that reject lo, the one with the largest slack there: the last to stop rejecting.
    slack = reconstruction_slack(family, lo, m=m, guesses=guesses[winners], correct=correct[winners], alpha=alpha)
    return lo, int(winners[np.argmax(slack)])


def gdp_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-GDP: ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)`` (Dong, Roth, Su 2022, Cor. 2.13).

    Computed in the log domain (``log_ndtr``), so large eps neither overflows ``e^eps`` nor cancels to 0 - 0.
    """
    if mu <= 0:
        return 0.0
    log_a = special.log_ndtr(-eps / mu + mu / 2)
    log_b = eps + special.log_ndtr(-eps / mu - mu / 2)
    if log_b >= log_a:
        return 0.0
    return float(np.exp(log_a) * -np.expm1(log_b - log_a))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest eps such that mu-GDP is (eps, delta)-DP (Dong, Roth, Su 2022, Cor. 2.13), by ``brentq``.

    Args:
        mu: the GDP parameter, ``>= 0``.
        delta: in ``(0, 1)``.

    Returns:
        eps ``>= 0``; 0 when mu-GDP is already (0, delta)-DP.
    """
    if not 0 < delta < 1:
        raise PrivauditError(f"delta must be in (0, 1) to convert mu-GDP to (eps, delta)-DP, got {delta}")
    if mu < 0:
        raise PrivauditError(f"mu must be >= 0, got {mu}")

    # delta(eps) falls from delta(0) = 2 Phi(mu/2) - 1 towards 0; compare logs so that tiny deltas keep precision.
    def gap(eps: float) -> float:
        log_a = special.log_ndtr(-eps / mu + mu / 2)
        log_b = eps + special.log_ndtr(-eps / mu - mu / 2)
        return log_a + np.log(-np.expm1(min(log_b - log_a, -1e-300))) - np.log(delta)

    if mu == 0 or gap(0.0) <= 0:
        return 0.0
    hi = max(1.0, mu * mu)
    while gap(hi) > 0:
        hi *= 2
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gdp_mu(eps: float, delta: float) -> float:
    """The mu of the Gaussian mechanism that is exactly (eps, delta)-DP: ``gdp_delta(eps, mu) = delta``, by brentq."""
    if not 0 < delta < 1:
        raise PrivauditError(f"delta must be in (0, 1), got {delta}")
    hi = 1.0
    while gdp_delta(eps, hi) < delta:
        hi *= 2
    return float(optimize.brentq(lambda mu: gdp_delta(eps, mu) - delta, 1e-12, hi, xtol=1e-14, rtol=1e-12))

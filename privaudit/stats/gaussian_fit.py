"""A likelihood estimate of the privacy of a one-run audit's canaries: NOT a bound.

The scores of the inserted and the left-out canaries are fitted with two Gaussians of one common variance, and the
standardised distance between their means is read as the mu of mu-GDP (Dong, Roth, Su 2022: mu-GDP is exactly the
trade-off of N(0, 1) against N(mu, 1)). This is the heuristic of Steinke et al. 2025 ("The last iterate advantage",
a Gaussian fit of the canaries' statistics) and of Agrawal et al. 2026 ("Let's Ask Gauss"): by the central limit
theorem, the composed privacy loss of many DP-SGD steps is close to Gaussian, and the fit uses every canary's score
instead of the few at the top that the rigorous bounds rest on, so it is far tighter, but it is only as right as the
Gaussian shape is. It is an estimate, never a bound: no gate checks it unless asked (``dp-audit --fail-if-estimate-exceeds-epsilon``).

The fit has **equal** variances on purpose. With one variance per side the fitted likelihood ratio is quadratic and
unbounded, and a small sampling difference between the two variances alone sends the epsilon at a small delta far
above the truth (``tests/stats/test_gaussian_fit.py`` shows it on honest mechanisms).

The lower confidence limit inverts the exact sampling distribution of the standardised mean difference of two
Gaussian samples with a common variance: ``t = d / sqrt(1/n_in + 1/n_out)`` is noncentral t with ``n_in + n_out - 2``
degrees of freedom and noncentrality ``mu / sqrt(1/n_in + 1/n_out)`` (Hedges & Olkin 1985, ch. 5), and the limit is
the noncentrality at which the observed ``t`` is the upper ``alpha`` quantile (Steiger & Fouladi 1997). Where scipy's
noncentral t cannot be evaluated (a very large ``t``), the large-sample normal law of ``d``, variance
``1/n_in + 1/n_out + d^2 / (2 (n_in + n_out))`` (Hedges & Olkin 1985, eq. 5.14), takes its place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from privaudit.errors import PrivauditError
from privaudit.stats.fdp import gdp_epsilon

LABEL = "estimate, not a bound"


@dataclass(frozen=True)
class GaussianFitEstimate:
    """The equal-variance Gaussian fit of the canary scores, as mu-GDP and as epsilon at ``delta``.

    Attributes:
        mu: the standardised mean difference (Hedges' small-sample correction applied), at least 0.
        mu_lower: its lower confidence limit at level ``1 - alpha``, at least 0.
        epsilon: ``mu`` as the epsilon of mu-GDP at ``delta``.
        epsilon_lower: ``mu_lower`` likewise.
        delta: the delta of the epsilons.
        alpha: one-sided significance of the lower limit.
        n_in: inserted canaries.
        n_out: left-out canaries.
        method: how the limit was found: ``noncentral-t`` or ``normal`` (the large-sample law).
    """

    mu: float
    mu_lower: float
    epsilon: float
    epsilon_lower: float
    delta: float
    alpha: float
    n_in: int
    n_out: int
    method: str
    label: str = LABEL

    def to_dict(self) -> dict:
        """The JSON object (``estimate`` of ``privaudit.dp-audit/1``)."""

        def finite(x: float) -> float | None:  # JSON has no infinity: perfect separation writes null
            return None if math.isinf(x) else float(x)

        return {
            "label": self.label,
            "mu": finite(self.mu),
            "mu_lower": finite(self.mu_lower),
            "epsilon": finite(self.epsilon),
            "epsilon_lower": finite(self.epsilon_lower),
            "alpha": self.alpha,
            "method": self.method,
        }


def gaussian_fit_estimate(
    scores: np.ndarray, inserted: np.ndarray, *, delta: float, alpha: float = 0.05
) -> GaussianFitEstimate:
    """Fit N(m_in, s^2) and N(m_out, s^2) to the scores of the inserted and left-out canaries (higher means "in").

    Args:
        scores: one score per canary.
        inserted: one 0/1 (or bool) per canary.
        delta: the delta of the epsilons, in (0, 1).
        alpha: the lower limit holds with confidence ``1 - alpha`` (if the scores are Gaussian), in (0, 0.5).

    Returns:
        The estimate; ``mu`` and its limit are clipped at 0 (a fit with the "in" scores lower is no leak).

    Raises:
        PrivauditError: shapes that differ, fewer than two canaries on a side, non-finite scores, bad levels.
    """
    scores = np.asarray(scores, dtype=np.float64)
    inserted = np.asarray(inserted).astype(bool)
    if scores.shape != inserted.shape or scores.ndim != 1:
        raise PrivauditError(f"scores and inserted must be 1-d of one length, got {scores.shape} and {inserted.shape}")
    if not np.isfinite(scores).all():
        raise PrivauditError("the Gaussian fit needs finite scores")
    if not 0 < alpha < 0.5 or not 0 < delta < 1:
        raise PrivauditError(f"the Gaussian fit needs alpha in (0, 0.5) and delta in (0, 1), got {alpha}, {delta}")
    s_in, s_out = scores[inserted], scores[~inserted]
    n_in, n_out = len(s_in), len(s_out)
    if n_in < 2 or n_out < 2:
        raise PrivauditError("the Gaussian fit needs at least two inserted and two left-out canaries")
    df = n_in + n_out - 2
    pooled = ((n_in - 1) * s_in.var(ddof=1) + (n_out - 1) * s_out.var(ddof=1)) / df
    diff = s_in.mean() - s_out.mean()
    if pooled <= 0:  # every score on each side equal: the two sides are told apart perfectly, or not at all
        d = math.inf if diff > 0 else 0.0
    else:
        d = diff / math.sqrt(pooled)
    scale = math.sqrt(1 / n_in + 1 / n_out)
    # Hedges' g: d overstates mu by about 3 / (4 df); J(df) corrects it (Hedges & Olkin 1985, eq. 5.10).
    mu = max(0.0, d * (1 - 3 / (4 * df - 1)))
    mu_lower, method = _lower_limit(d, scale, df, n_in + n_out, alpha)
    return GaussianFitEstimate(
        mu=mu,
        mu_lower=mu_lower,
        epsilon=_epsilon(mu, delta),
        epsilon_lower=_epsilon(mu_lower, delta),
        delta=float(delta),
        alpha=float(alpha),
        n_in=n_in,
        n_out=n_out,
        method=method,
    )


def _epsilon(mu: float, delta: float) -> float:
    return math.inf if math.isinf(mu) else gdp_epsilon(mu, delta)


def _lower_limit(d: float, scale: float, df: int, n: int, alpha: float) -> tuple[float, str]:
    """The ``1 - alpha`` lower confidence limit of mu given the observed ``d`` (see the module's docstring)."""
    if math.isinf(d):
        return math.inf, "normal"
    t = d / scale

    def excess(ncp: float) -> float:  # P(T >= t | ncp) - alpha, increasing in ncp
        return float(stats.nct.sf(t, df, ncp)) - alpha

    lo = t - 10 * max(1.0, abs(t) / math.sqrt(df)) - 10
    try:
        a, b = excess(lo), excess(t)
        if math.isfinite(a) and math.isfinite(b) and a < 0 < b:
            return max(0.0, optimize.brentq(excess, lo, t, xtol=1e-10) * scale), "noncentral-t"
    except (ArithmeticError, ValueError):
        pass
    sd = math.sqrt(scale**2 + d * d / (2 * n))
    return max(0.0, d + special.ndtri(alpha) * sd), "normal"

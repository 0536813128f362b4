"""One-run privacy audit (Steinke, Nasr, Jagielski, NeurIPS 2023, "Privacy Auditing with One (1) Training Run").

``m`` canaries are each included in training independently with probability 1/2 (the coin flips recorded in the
canary file). After training, the auditor guesses "in" for the ``k_in`` highest-scoring canaries, "out" for the
``k_out`` lowest and abstains on the rest. With ``r = k_in + k_out`` guesses of which ``v`` are right, an
(eps, delta)-DP training run makes ``v`` stochastically no larger than Binomial(r, e^eps / (1 + e^eps)), up to a
delta term; the audit reports the largest eps whose p-value falls below ``p``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from privaudit.errors import PrivauditError

# Default numbers of guesses, as fractions of m, each tested at p / len (Bonferroni). Small fractions suit strong
# attacks that are confident on few canaries; large ones suit weak attacks whose edge only shows in aggregate.
DEFAULT_GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

_TOLERANCE = 1e-10  # on eps, for the root finder


@dataclass(frozen=True)
class OneRunResult:
    """Outcome of a one-run audit.

    Attributes:
        epsilon_lower_bound: the best eps lower bound over the tried numbers of guesses, valid at confidence
            ``1 - p`` overall.
        m: number of canaries.
        r: number of guesses behind the reported bound.
        v: number of correct guesses among them.
        k_in: canaries guessed "in" (the ``k_in`` highest scores).
        k_out: canaries guessed "out" (the ``k_out`` lowest scores).
        delta: the delta of the (eps, delta)-DP claim under test.
        p: overall significance level.
        p_per_guess: the level each number of guesses was tested at, ``p / len(guesses)``.
        guesses: every number of guesses tried, in the order tried.
        epsilons: the bound each of them gave, aligned with ``guesses``.
    """

    epsilon_lower_bound: float
    m: int
    r: int
    v: int
    k_in: int
    k_out: int
    delta: float
    p: float
    p_per_guess: float
    guesses: tuple[int, ...]
    epsilons: tuple[float, ...]

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict of plain Python types."""
        return {
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "m": self.m,
            "r": self.r,
            "v": self.v,
            "k_in": self.k_in,
            "k_out": self.k_out,
            "delta": self.delta,
            "p": self.p,
            "p_per_guess": self.p_per_guess,
            "guesses": list(self.guesses),
            "epsilons": list(self.epsilons),
        }


def p_value(*, m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    """Probability of ``v`` or more correct guesses out of ``r`` if training is (eps, delta)-DP.

    The p-value procedure of Steinke et al. 2023 (appendix) for delta >= 0: with ``q = e^eps / (1 + e^eps)``,
    ``P[Binomial(r, q) >= v] + 2 m delta max_{1 <= i <= v} P[v - i <= Binomial(r, q) < v] / i``.

    Args:
        m: number of canaries.
        r: number of guesses.
        v: number of correct guesses.
        eps: epsilon of the null hypothesis, ``>= 0``.
        delta: delta of the null hypothesis.

    Returns:
        The p-value, at most 1.
    """
    _check_counts(m, r, v)
    q = special.expit(eps)  # accuracy of eps-DP randomized response
    tail = stats.binom.sf(v - 1, r, q)  # P[Binomial(r, q) >= v]
    if delta == 0 or v == 0:
        return float(min(tail, 1.0))
    i = np.arange(1, v + 1)
    # P[v - i <= Binomial(r, q) < v] for i = 1..v, summed from the pmf (no cancellation between two tails).
    window = np.cumsum(stats.binom.pmf(v - i, r, q))
    return float(min(tail + 2 * m * delta * np.max(window / i), 1.0))


def epsilon_lower_bound_one_run(
    *, m: int, r: int, v: int, delta: float = 0.0, p: float = 0.05, eps_lo: float = 0.0
) -> float:
    """Largest eps at which the observation "v of r guesses correct" rejects (eps, delta)-DP at level ``p``.

    Root finding on eps (``brentq`` after doubling a bracket), to 1e-10, as in Steinke et al. 2023 (appendix): the
    p-value grows with eps, and the bound is the supremum of the eps values whose p-value is below ``p`` (0 if
    none is).

    Args:
        m: number of canaries, each included with probability 1/2.
        r: number of guesses (abstentions excluded), ``0 <= r <= m``.
        v: number of correct guesses, ``0 <= v <= r``.
        delta: delta of the (eps, delta)-DP claim under test.
        p: significance level; the bound holds with confidence ``1 - p``.
        eps_lo: where the search starts: the bound is ``max(eps_lo, ...)``, and ``eps_lo`` itself is returned when
            it is not rejected (an auditor trying many guess counts passes its best bound so far).

    Returns:
        The epsilon lower bound, ``>= eps_lo``.

    Raises:
        PrivauditError: on counts or levels out of range.
    """
    _check_counts(m, r, v)
    _check_levels(delta, p)
    if p_value(m=m, r=r, v=v, eps=eps_lo, delta=delta) >= p:
        return eps_lo
    lo, hi = eps_lo, max(1.0, 2 * eps_lo)  # invariant: p_value(lo) < p <= p_value(hi)
    while p_value(m=m, r=r, v=v, eps=hi, delta=delta) < p:
        lo, hi = hi, 2 * hi
    # The p-value is continuous and increasing in eps: the bound is the root of p_value(eps) = p in [lo, hi].
    root = optimize.brentq(lambda eps: p_value(m=m, r=r, v=v, eps=eps, delta=delta) - p, lo, hi, xtol=_TOLERANCE)
    return float(root)


def one_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float = 0.0,
    p: float = 0.05,
    guesses: Sequence[int] | None = None,
) -> OneRunResult:
    """Runs the one-run audit on canary scores.

    Each number of guesses ``r`` is split in a way fixed in advance: ``k_in = ceil(r / 2)`` "in" guesses on the
    highest scores and ``k_out = floor(r / 2)`` "out" guesses on the lowest. Trying several ``r`` and keeping
    the best bound would overstate the confidence, so each ``r`` is tested at ``p / len(guesses)``
    (Bonferroni): the reported bound then holds with confidence ``1 - p``. By default ``guesses`` is
    ``round(f * m)`` for ``f`` in :data:`DEFAULT_GUESS_FRACTIONS`, duplicates removed. Pass a single ``r``
    declared before looking at the scores to test it at the full level ``p``.

    Ties in the scores are broken by canary order, which the coin flips do not depend on.

    Args:
        scores: one score per canary, shape ``(m,)``; higher means more likely included.
        included: the coin flips from the canary file, shape ``(m,)``, bool or 0/1.
        delta: delta of the (eps, delta)-DP claim under test.
        p: overall significance level.
        guesses: numbers of guesses to try, each in ``[1, m]``.

    Returns:
        The best bound with the guesses behind it, and the bound of every number of guesses tried.

    Raises:
        PrivauditError: on invalid inputs or parameters.
    """
    scores, included = _validate(scores, included)
    _check_levels(delta, p)
    m = scores.size
    if guesses is None:
        guesses = tuple(dict.fromkeys(max(1, round(f * m)) for f in DEFAULT_GUESS_FRACTIONS))
    else:
        guesses = tuple(int(r) for r in guesses)
        if not guesses or any(not 1 <= r <= m for r in guesses) or len(set(guesses)) != len(guesses):
            raise PrivauditError(f"guesses must be distinct integers in [1, {m}], got {list(guesses)}")
    p_each = p / len(guesses)

    # Canaries from most to least likely included; a stable sort breaks ties by canary order.
    ranked = included[np.argsort(-scores, kind="stable")]
    correct_in = np.concatenate([[0], np.cumsum(ranked)])  # correct "in" guesses among the top k
    correct_out = np.concatenate([[0], np.cumsum(~ranked[::-1])])  # correct "out" guesses among the bottom k

    best, epsilons = None, []
    for r in guesses:
        k_in, k_out = (r + 1) // 2, r // 2
        v = int(correct_in[k_in] + correct_out[k_out])
        eps = epsilon_lower_bound_one_run(m=m, r=r, v=v, delta=delta, p=p_each)
        epsilons.append(eps)
        if best is None or eps > best[0]:
            best = (eps, r, v, k_in, k_out)
    eps, r, v, k_in, k_out = best
    return OneRunResult(
        epsilon_lower_bound=eps,
        m=m,
        r=r,
        v=v,
        k_in=k_in,
        k_out=k_out,
        delta=float(delta),
        p=float(p),
        p_per_guess=float(p_each),
        guesses=guesses,
        epsilons=tuple(epsilons),
    )


def _validate(scores: np.ndarray, included: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PrivauditError(f"canary scores must be numeric: {err}") from None
    flips = np.asarray(included)
    if scores.ndim != 1 or flips.ndim != 1 or scores.size != flips.size or scores.size == 0:
        raise PrivauditError(
            f"canary scores and inclusion flags must be non-empty 1-D arrays of one length, "
            f"got shapes {scores.shape} and {flips.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise PrivauditError(f"canary scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite values")
    if flips.dtype != bool:
        if not np.isin(flips, (0, 1)).all():
            raise PrivauditError("canary inclusion flags must be bool or 0/1")
        flips = flips.astype(bool)
    return scores, flips


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m or m < 1:
        raise PrivauditError(f"one-run audit needs 0 <= v <= r <= m and m >= 1, got m={m}, r={r}, v={v}")


def _check_levels(delta: float, p: float) -> None:
    if not 0 <= delta <= 1:
        raise PrivauditError(f"delta must be in [0, 1], got {delta}")
    if not 0 < p < 1:
        raise PrivauditError(f"p must be in (0, 1), got {p}")

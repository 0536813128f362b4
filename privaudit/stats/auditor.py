"""One-run epsilon lower bounds from canary scores, side by side: f-DP (two families) and Steinke et al.

An auditor holds the scores of the inserted ("in") and left-out ("out") canaries of one training run, each canary
having been inserted with probability 1/2. A threshold ``t`` is one guess rule: guess "in" for every canary scoring
``>= t`` and abstain on the rest, so ``c' = TP + FP`` guesses of which ``c = TP`` are right. With ``one_sided=False``
each threshold also gives the reverse rule, guess "out" for every canary scoring ``< t`` (``c' = FN + TN``,
``c = TN``), both counted in the correction. Each bound is a method testing those rules, and which thresholds are
tested (and at what level) is a small strategy object:

- :class:`Bonferroni`: every threshold on the Pareto frontier of (false negatives, true negatives), each tested at
  ``alpha / len(frontier)``, as jax_privacy's ``CanaryScoreAuditor`` does: a rule below the frontier is beaten by
  mixing two frontier rules, so it is left out, and the Bonferroni correction counts only the frontier.
- :class:`Explicit`: one threshold fixed before looking at the scores, tested at the full ``alpha``.

The bounds:

- :meth:`CanaryScoreAuditor.epsilon_fdp`: Algorithm 3 of Mahloujifar, Melis, Chaudhuri 2024 with the (eps, delta)
  trade-off family: a strict (eps, delta) lower bound.
- :meth:`CanaryScoreAuditor.gaussian_fdp`: the same with the Gaussian (mu-GDP) family, reported as mu and as eps at
  delta: tighter, but it **assumes the mechanism's trade-off curve is Gaussian**.
- :meth:`CanaryScoreAuditor.epsilon_steinke`: the binomial test of Steinke, Nasr, Jagielski 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from privaudit.errors import PrivauditError
from privaudit.stats.fdp import EpsDeltaFamily, GaussianFamily, fdp_lower_bound, gdp_epsilon
from privaudit.stats.onerun import epsilon_lower_bound_one_run


@dataclass(frozen=True)
class Bonferroni:
    """Test every threshold of the (FN, TN) Pareto frontier, each at ``alpha / len(frontier)``."""

    name: str = "bonferroni"


@dataclass(frozen=True)
class Explicit:
    """Test one threshold, chosen before looking at the scores, at the full ``alpha``.

    Attributes:
        threshold: guess "in" for scores ``>= threshold``.
    """

    threshold: float
    name: str = "explicit"


ThresholdStrategy = Bonferroni | Explicit


@dataclass(frozen=True)
class Hypotheses:
    """The guess rules a strategy tests.

    Attributes:
        thresholds: one per rule: guess "in" for scores ``>= threshold`` (side "in"), or "out" for scores below it.
        guesses: ``c'``, canaries each rule guesses.
        correct: ``c``, correct guesses among them.
        alpha: the level each rule is tested at.
        sides: ``"in"`` or ``"out"`` per rule.
    """

    thresholds: np.ndarray
    guesses: np.ndarray
    correct: np.ndarray
    alpha: float
    sides: np.ndarray


@dataclass(frozen=True)
class Bound:
    """One epsilon lower bound and the guess rule behind it.

    Attributes:
        method: ``"eps-delta"`` (f-DP, (eps, delta) family), ``"gaussian"`` (f-DP, mu-GDP family) or ``"steinke"``.
        epsilon: the lower bound on eps at the audit's delta (0 when nothing is rejected).
        mu: the mu-GDP lower bound, for ``"gaussian"`` only.
        assumes: what the bound assumes of the mechanism beyond (eps, delta)-DP: ``"gaussian trade-off"`` or ``None``.
        threshold: the score threshold of the rule behind the bound (``None`` when the bound is 0).
        side: ``"in"`` (guess "in" at or above the threshold) or ``"out"`` (guess "out" below it); ``None`` with
            the bound 0.
        guesses: canaries that rule guessed.
        correct: correct guesses among them.
    """

    method: str
    epsilon: float
    mu: float | None
    assumes: str | None
    threshold: float | None
    side: str | None
    guesses: int
    correct: int

    def to_dict(self) -> dict:
        """A JSON-ready dict of plain Python types."""
        return {
            "method": self.method,
            "epsilon": self.epsilon,
            "mu": self.mu,
            "assumes": self.assumes,
            "threshold": self.threshold,
            "side": self.side,
            "guesses": self.guesses,
            "correct": self.correct,
        }


@dataclass(frozen=True)
class OneRunBounds:
    """The three bounds of one audit, with its settings.

    Attributes:
        m: number of canaries; ``n_in`` inserted, ``n_out`` left out.
        alpha: overall significance: each bound holds with confidence ``1 - alpha``.
        delta: delta of the (eps, delta) claims under test.
        strategy: ``"bonferroni"`` or ``"explicit"``.
        one_sided: only "in" guesses; else also the reverse ("out") rule of every threshold.
        n_hypotheses: guess rules tested; ``alpha_per_test = alpha / n_hypotheses``.
        eps_delta, gaussian, steinke: the bounds.
        reach: the (eps, delta)-family bound at these counts if every inserted canary scored above every left-out one
            (:func:`reach`): the most this audit can show, whatever the scores.
    """

    m: int
    n_in: int
    n_out: int
    alpha: float
    delta: float
    strategy: str
    one_sided: bool
    n_hypotheses: int
    alpha_per_test: float
    eps_delta: Bound
    gaussian: Bound
    steinke: Bound
    reach: float | None = None

    @property
    def bounds(self) -> tuple[Bound, Bound, Bound]:
        return self.eps_delta, self.gaussian, self.steinke

    def to_dict(self) -> dict:
        """A JSON-ready dict of plain Python types."""
        return {
            "m": self.m,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "alpha": self.alpha,
            "delta": self.delta,
            "strategy": self.strategy,
            "one_sided": self.one_sided,
            "n_hypotheses": self.n_hypotheses,
            "alpha_per_test": self.alpha_per_test,
            "eps_delta": self.eps_delta.to_dict(),
            "gaussian": self.gaussian.to_dict(),
            "steinke": self.steinke.to_dict(),
            "reach": self.reach,
        }


def reach(n_in: int, n_out: int, alpha: float, delta: float, *, one_sided: bool = True) -> float:
    """The most a one-run audit of ``n_in`` inserted and ``n_out`` left-out canaries can show: its (eps, delta)-family
    bound if every inserted canary scored above every left-out one.

    A claim above the reach cannot fail the strict gate with so few canaries, however badly the claim is broken: the
    bound is capped by the number of guesses, not by the model (Steinke et al. 2023, Figure 1; Mahloujifar et al.
    2024). Perfect separation puts every guess of every rule right, so no score set of these counts gives a higher
    bound at the same levels (it also tests the fewest rules, so it pays the smallest Bonferroni price).
    """
    if n_in < 1 or n_out < 1:
        raise PrivauditError(f"the reach needs an inserted and a left-out canary, got {n_in} and {n_out}")
    perfect = CanaryScoreAuditor(np.ones(n_in), np.zeros(n_out))
    return perfect.epsilon_fdp(alpha, delta, one_sided=one_sided).epsilon


def upper_hull(points: np.ndarray) -> np.ndarray:
    """Indices of the vertices of the upper concave hull of points sorted by x (Andrew's monotone chain).

    Collinear and dominated points are dropped, the two end points always kept. Written out rather than taken from
    ``scipy.spatial.ConvexHull``: Qhull refuses the degenerate (all collinear) frontiers that null audits produce.
    """
    keep: list[int] = []
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    for k in range(len(points)):
        while len(keep) >= 2:
            a, b = keep[-2], keep[-1]
            if (x[b] - x[a]) * (y[k] - y[a]) - (y[b] - y[a]) * (x[k] - x[a]) >= 0:
                keep.pop()  # b lies on or under the chord from a to k
            else:
                break
        keep.append(k)
    return np.array(keep, dtype=np.int64)


class CanaryScoreAuditor:
    """One-run bounds from the scores of inserted and left-out canaries; higher scores mean "more likely in".

    Attributes:
        in_scores_: scores of the inserted canaries.
        out_scores_: scores of the left-out canaries.
        thresholds_: the (FN, TN) Pareto frontier's thresholds, increasing, the last ``inf`` (no guesses).
        fn_counts_: inserted canaries scoring below each threshold.
        tn_counts_: left-out canaries scoring below each threshold.
    """

    def __init__(self, in_scores: np.ndarray, out_scores: np.ndarray) -> None:
        self.in_scores_ = _scores(in_scores, "inserted")
        self.out_scores_ = _scores(out_scores, "left-out")
        thresholds = np.concatenate([np.union1d(self.in_scores_, self.out_scores_), [np.inf]])
        fn = np.searchsorted(np.sort(self.in_scores_), thresholds, side="left")
        tn = np.searchsorted(np.sort(self.out_scores_), thresholds, side="left")
        frontier = upper_hull(np.stack([fn, tn], axis=1))
        self.thresholds_, self.fn_counts_, self.tn_counts_ = thresholds[frontier], fn[frontier], tn[frontier]

    @classmethod
    def from_inclusion(cls, scores: np.ndarray, inserted: np.ndarray) -> CanaryScoreAuditor:
        """An auditor from one score and one inclusion bit (bool or 0/1) per canary."""
        scores = np.asarray(scores, dtype=np.float64)
        bits = np.asarray(inserted)
        if scores.ndim != 1 or bits.shape != scores.shape:
            raise PrivauditError(
                f"scores and inclusion bits must be 1-D of one length, got {scores.shape}, {bits.shape}"
            )
        if bits.dtype != bool:
            if not np.isin(bits, (0, 1)).all():
                raise PrivauditError("inclusion bits must be bool or 0/1")
            bits = bits.astype(bool)
        return cls(scores[bits], scores[~bits])

    @property
    def m(self) -> int:
        return self.in_scores_.size + self.out_scores_.size

    def hypotheses(
        self, alpha: float, strategy: ThresholdStrategy = Bonferroni(), *, one_sided: bool = True
    ) -> Hypotheses:
        """The guess rules ``strategy`` tests, and the level of each, for an overall level ``alpha``.

        Every rule counts in the Bonferroni correction, the reverse rules of ``one_sided=False`` included.
        """
        _check_alpha(alpha)
        n_in, n_out = self.in_scores_.size, self.out_scores_.size
        if isinstance(strategy, Explicit):
            thresholds = np.array([float(strategy.threshold)])
            fn = np.array([np.sum(self.in_scores_ < thresholds[0])])
            tn = np.array([np.sum(self.out_scores_ < thresholds[0])])
        elif isinstance(strategy, Bonferroni):
            thresholds, fn, tn = self.thresholds_, self.fn_counts_, self.tn_counts_
        else:
            raise PrivauditError(f"unknown threshold strategy {strategy!r}")
        tp, fp = n_in - fn, n_out - tn
        guesses, correct, sides = tp + fp, tp, np.full(thresholds.size, "in")
        if not one_sided:
            thresholds = np.concatenate([thresholds, thresholds])
            guesses, correct = np.concatenate([guesses, fn + tn]), np.concatenate([correct, tn])
            sides = np.concatenate([sides, np.full(tn.size, "out")])
        return Hypotheses(thresholds, guesses, correct, alpha / thresholds.size, sides)

    def epsilon_fdp(
        self, alpha: float, delta: float, strategy: ThresholdStrategy = Bonferroni(), *, one_sided: bool = True
    ) -> Bound:
        """Lower bound on eps rejecting the (eps, delta) trade-off curve (Mahloujifar et al. 2024, Algorithm 3)."""
        _check_delta(delta, allow_zero=True)
        family = EpsDeltaFamily(delta=delta)
        h = self.hypotheses(alpha, strategy, one_sided=one_sided)
        eps, j = fdp_lower_bound(family, m=self.m, guesses=h.guesses, correct=h.correct, alpha=h.alpha)
        return _bound(family.name, eps, None, family.assumes, h, j)

    def gaussian_fdp(
        self, alpha: float, delta: float, strategy: ThresholdStrategy = Bonferroni(), *, one_sided: bool = True
    ) -> Bound:
        """Lower bound on mu rejecting mu-GDP (Algorithm 3), and the eps of that mu-GDP at ``delta``.

        Assumes the mechanism's trade-off curve is Gaussian: it bounds mu, and eps only through mu.
        """
        _check_delta(delta, allow_zero=False)
        family = GaussianFamily()
        h = self.hypotheses(alpha, strategy, one_sided=one_sided)
        mu, j = fdp_lower_bound(family, m=self.m, guesses=h.guesses, correct=h.correct, alpha=h.alpha)
        return _bound(family.name, gdp_epsilon(mu, delta), mu, family.assumes, h, j)

    def epsilon_steinke(
        self, alpha: float, delta: float, strategy: ThresholdStrategy = Bonferroni(), *, one_sided: bool = True
    ) -> Bound:
        """Lower bound on eps from the binomial test of Steinke, Nasr, Jagielski 2023 (``stats.onerun.p_value``).

        Rules are tried from the most precise down; one whose delta-free p-value at the best eps so far is already
        above its level cannot do better (the delta term only adds), so it is skipped without a search.
        """
        _check_delta(delta, allow_zero=True)
        h = self.hypotheses(alpha, strategy, one_sided=one_sided)
        best, best_j = 0.0, -1
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(h.guesses > 0, h.correct / h.guesses, 0.0)
        for j in np.argsort(-precision, kind="stable"):
            r, v = int(h.guesses[j]), int(h.correct[j])
            if r == 0 or stats.binom.sf(v - 1, r, special.expit(best)) >= h.alpha:
                continue
            eps = epsilon_lower_bound_one_run(m=self.m, r=r, v=v, delta=delta, p=h.alpha, eps_lo=best)
            if eps > best:
                best, best_j = eps, int(j)
        return _bound("steinke", best, None, None, h, best_j)

    def audit(
        self, alpha: float, delta: float, strategy: ThresholdStrategy = Bonferroni(), *, one_sided: bool = True
    ) -> OneRunBounds:
        """All three bounds, on the same guess rules at the same levels."""
        h = self.hypotheses(alpha, strategy, one_sided=one_sided)
        return OneRunBounds(
            m=self.m,
            n_in=int(self.in_scores_.size),
            n_out=int(self.out_scores_.size),
            alpha=float(alpha),
            delta=float(delta),
            strategy=strategy.name,
            one_sided=one_sided,
            n_hypotheses=int(h.thresholds.size),
            alpha_per_test=float(h.alpha),
            eps_delta=self.epsilon_fdp(alpha, delta, strategy, one_sided=one_sided),
            gaussian=self.gaussian_fdp(alpha, delta, strategy, one_sided=one_sided),
            steinke=self.epsilon_steinke(alpha, delta, strategy, one_sided=one_sided),
            reach=reach(self.in_scores_.size, self.out_scores_.size, alpha, delta, one_sided=one_sided),
        )


def _bound(method: str, eps: float, mu: float | None, assumes: str | None, h: Hypotheses, j: int) -> Bound:
    if j < 0:
        return Bound(method, 0.0, None if mu is None else 0.0, assumes, None, None, 0, 0)
    threshold, side = float(h.thresholds[j]), str(h.sides[j])
    return Bound(method, float(eps), mu, assumes, threshold, side, int(h.guesses[j]), int(h.correct[j]))


def _scores(values: np.ndarray, which: str) -> np.ndarray:
    try:
        scores = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PrivauditError(f"{which} canary scores must be numeric: {err}") from None
    if scores.ndim != 1 or scores.size == 0:
        raise PrivauditError(f"{which} canary scores must be a non-empty 1-D array, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise PrivauditError(
            f"{which} canary scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite values"
        )
    return scores


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise PrivauditError(f"alpha must be in (0, 0.5), got {alpha}")


def _check_delta(delta: float, *, allow_zero: bool) -> None:
    if not (0 <= delta < 1 if allow_zero else 0 < delta < 1):
        raise PrivauditError(f"delta must be in {'[0' if allow_zero else '(0'}, 1), got {delta}")

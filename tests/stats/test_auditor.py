"""Tests for privaudit.stats.auditor against jax_privacy's known answers (``test_epsilon_one_run_close``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats

from privaudit.errors import PrivauditError
from privaudit.stats.auditor import Bonferroni, CanaryScoreAuditor, Explicit, upper_hull
from privaudit.stats.fdp import ASSUMES_GAUSSIAN


def deterministic_normal(shift: float, n: int) -> np.ndarray:
    """Scores at the n mid-quantiles of N(shift, 1), as jax_privacy's tests build them."""
    return stats.norm.ppf(np.linspace(0, 1, n, endpoint=False) + 1 / (2 * n)) + shift


def auditor(shift: float, n: int = 10_000) -> CanaryScoreAuditor:
    return CanaryScoreAuditor(deterministic_normal(shift, n), deterministic_normal(0.0, n))


@pytest.mark.parametrize(("shift", "expected"), [(1, 1.13346), (2, 2.311945), (4, 4.395568)])
def test_steinke_known_answers(shift, expected):
    assert auditor(shift).epsilon_steinke(0.05, 1e-6).epsilon == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("shift", "expected"), [(1, 2.164749), (2, 4.7218075), (4, 9.133752)])
def test_gaussian_fdp_known_answers(shift, expected):
    bound = auditor(shift).gaussian_fdp(0.05, 1e-6)
    assert bound.epsilon == pytest.approx(expected, rel=1e-4)
    assert bound.assumes == ASSUMES_GAUSSIAN


def test_bounds_side_by_side():
    result = auditor(1).audit(0.05, 1e-6)
    assert result.n_hypotheses == 386 and result.alpha_per_test == pytest.approx(0.05 / 386)
    # The strict (eps, delta) f-DP bound beats Steinke's; the Gaussian one, an assumption, beats both.
    assert result.steinke.epsilon < result.eps_delta.epsilon < result.gaussian.epsilon
    assert result.eps_delta.epsilon == pytest.approx(1.912468, rel=1e-4)
    assert result.eps_delta.assumes is None
    for bound in result.bounds:
        assert 0 < bound.correct <= bound.guesses <= 20_000
    document = result.to_dict()
    assert document["gaussian"]["assumes"] == "gaussian trade-off"
    assert document["gaussian"]["mu"] == pytest.approx(0.481919, rel=1e-4)


def test_null_scores_give_zero():
    rng = np.random.default_rng(0)
    result = CanaryScoreAuditor(rng.normal(size=5000), rng.normal(size=5000)).audit(0.05, 1e-5)
    assert [b.epsilon for b in result.bounds] == [0.0, 0.0, 0.0]


def test_identical_distributions_have_a_two_point_frontier():
    assert auditor(0).thresholds_.size == 2
    assert auditor(0).audit(0.05, 1e-6).steinke.epsilon == 0.0


def test_explicit_threshold_tests_one_rule_at_full_alpha():
    a = auditor(2)
    best = a.epsilon_steinke(0.05, 1e-6)
    h = a.hypotheses(0.05, Explicit(best.threshold))
    assert (h.guesses[0], h.correct[0], h.alpha) == (best.guesses, best.correct, 0.05)
    # The same rule at the full level, with no correction, gives a larger bound.
    assert a.epsilon_steinke(0.05, 1e-6, Explicit(best.threshold)).epsilon > best.epsilon


def test_from_inclusion_splits_by_bit():
    a = CanaryScoreAuditor.from_inclusion(np.array([3.0, 1.0, 2.0, 0.0]), np.array([1, 0, 1, 0]))
    assert sorted(a.in_scores_) == [2.0, 3.0] and sorted(a.out_scores_) == [0.0, 1.0]
    with pytest.raises(PrivauditError, match="0/1"):
        CanaryScoreAuditor.from_inclusion(np.array([1.0, 2.0]), np.array([0, 2]))


def test_bad_scores_raise():
    with pytest.raises(PrivauditError, match="NaN"):
        CanaryScoreAuditor(np.array([1.0, np.nan]), np.array([0.0]))
    with pytest.raises(PrivauditError, match="non-empty"):
        CanaryScoreAuditor(np.array([]), np.array([0.0]))
    with pytest.raises(PrivauditError, match="alpha"):
        auditor(1, 100).audit(0.7, 1e-5)


def test_upper_hull_matches_brute_force():
    rng = np.random.default_rng(1)
    x = np.sort(rng.integers(0, 50, 200))
    points = np.stack([x, rng.integers(0, 50, 200)], axis=1)
    points = points[np.lexsort((points[:, 1], points[:, 0]))]
    hull = upper_hull(points)
    # Every point lies on or under each hull edge's line over its span, and every hull vertex is a strict turn.
    for a, b in zip(hull, hull[1:]):
        (x1, y1), (x2, y2) = points[a], points[b]
        span = (points[:, 0] >= x1) & (points[:, 0] <= x2)
        assert np.all((x2 - x1) * (points[span, 1] - y1) - (y2 - y1) * (points[span, 0] - x1) <= 0)
    p = points[hull].astype(float)
    turns = (p[1:-1, 0] - p[:-2, 0]) * (p[2:, 1] - p[:-2, 1]) - (p[1:-1, 1] - p[:-2, 1]) * (p[2:, 0] - p[:-2, 0])
    assert np.all(turns < 0)
    assert hull[0] == 0 and hull[-1] == len(points) - 1


def test_hundred_thousand_canaries_in_seconds():
    rng = np.random.default_rng(2)
    a = CanaryScoreAuditor(rng.normal(1.0, 1.0, 50_000), rng.normal(0.0, 1.0, 50_000))
    start = time.perf_counter()
    result = a.audit(0.05, 1e-5, Bonferroni())
    assert time.perf_counter() - start < 30  # about 2 s on one free core
    assert result.m == 100_000 and result.gaussian.epsilon > result.steinke.epsilon > 0


def test_two_sided_adds_the_reverse_rule_of_every_threshold():
    a = auditor(1, 2000)
    one, two = a.hypotheses(0.05), a.hypotheses(0.05, one_sided=False)
    assert two.thresholds.size == 2 * one.thresholds.size and two.alpha == pytest.approx(one.alpha / 2)
    # The reverse rule of threshold t guesses "out" for the scores below t: FN + TN guesses, TN right.
    out = two.sides == "out"
    assert np.array_equal(two.guesses[out], a.fn_counts_ + a.tn_counts_)
    assert np.array_equal(two.correct[out], a.tn_counts_)


def test_two_sided_finds_a_leak_only_the_out_guesses_see():
    # Left-out canaries score far below a block of overlapping ones: only "out" guesses are sure.
    rng = np.random.default_rng(3)
    in_scores = rng.normal(0.0, 1.0, 2000)
    out_scores = np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(-8.0, 0.1, 1000)])
    a = CanaryScoreAuditor(in_scores, out_scores)
    one, two = a.audit(0.05, 1e-5), a.audit(0.05, 1e-5, one_sided=False)
    assert not two.one_sided and two.n_hypotheses == 2 * one.n_hypotheses
    for key in ("eps_delta", "gaussian", "steinke"):
        assert getattr(two, key).epsilon > getattr(one, key).epsilon + 1
        assert getattr(two, key).side == "out"

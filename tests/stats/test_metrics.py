"""Tests for privaudit.stats.metrics against known answers from papers and reference libraries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.metrics import roc_auc_score

from privaudit.errors import PrivauditError
from privaudit.stats import metrics
from privaudit.stats.metrics import clopper_pearson, epsilon_from_counts, epsilon_lower_bound, evaluate


def _gaussian_scores(mu: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(mu, 1.0, n), rng.normal(0.0, 1.0, n)])
    return scores, np.concatenate([np.ones(n, bool), np.zeros(n, bool)])


def _gdp_epsilon(mu: float, delta: float) -> float:
    """Epsilon of mu-Gaussian DP at ``delta`` (Dong, Roth, Su 2019, Cor. 2.13), solved numerically."""

    def excess(eps: float) -> float:
        # delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)
        return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps + stats.norm.logcdf(-eps / mu - mu / 2)) - delta

    return optimize.brentq(excess, 0.0, 500.0)


# --- Clopper-Pearson -----------------------------------------------------------------------------------------


def test_clopper_pearson_zero_successes_closed_form():
    low, high = clopper_pearson(0, 500, alpha=0.01)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.005 ** (1 / 500), rel=1e-10)


def test_clopper_pearson_all_successes_closed_form():
    low, high = clopper_pearson(500, 500, alpha=0.01)
    assert low == pytest.approx(0.005 ** (1 / 500), rel=1e-10)
    assert high == 1.0


def test_clopper_pearson_textbook_value():
    # Exact 95% interval for 5 successes in 10 trials, as tabulated: [0.1871, 0.8129].
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.187086, abs=1e-6)
    assert high == pytest.approx(0.812914, abs=1e-6)


def test_vectorised_upper_bound_matches_clopper_pearson():
    ks = np.array([0, 1, 7, 49, 50])
    uppers = metrics._cp_upper(ks, 50, 0.05)
    for k, upper in zip(ks, uppers, strict=True):
        assert upper == pytest.approx(clopper_pearson(int(k), 50)[1], abs=1e-9)


@pytest.mark.parametrize("k, n", [(-1, 10), (11, 10), (0, 0), (1.5, 10)])
def test_clopper_pearson_rejects_bad_counts(k, n):
    with pytest.raises(PrivauditError):
        clopper_pearson(k, n)


# --- epsilon from counts -------------------------------------------------------------------------------------


def test_epsilon_from_counts_jagielski_known_answer():
    # Jagielski et al. 2020 (tensorflow/privacy research/audit_2020 audit_test.py): 4.541915810224092.
    eps = epsilon_from_counts(tp=500, fn=0, fp=0, tn=500, alpha=0.01, delta=0.0)
    assert round(eps, 4) == 4.5419
    assert eps == pytest.approx(4.541915810224092, abs=1e-9)


def test_epsilon_from_counts_no_separation_is_zero():
    # Same reference test: an attack that calls everything "member" proves nothing.
    assert epsilon_from_counts(tp=500, fn=0, fp=500, tn=0, alpha=0.01) == 0.0


def test_epsilon_from_counts_symmetric_and_decreasing_in_delta():
    a = epsilon_from_counts(tp=300, fn=200, fp=50, tn=450)
    b = epsilon_from_counts(tp=450, fn=50, fp=200, tn=300)  # classes swapped: the other inequality binds
    assert a == pytest.approx(b)
    assert epsilon_from_counts(tp=300, fn=200, fp=50, tn=450, delta=0.1) < a


def test_epsilon_from_counts_rejects_empty_class():
    with pytest.raises(PrivauditError):
        epsilon_from_counts(tp=0, fn=0, fp=3, tn=4)


# --- epsilon lower bound over thresholds ---------------------------------------------------------------------


def test_epsilon_lower_bound_perfect_separation_closed_form():
    # The held-out half holds 500 members and 500 non-members, perfectly separated, so the bound is
    # ln(q / (1 - q)) with q = (alpha / 2)^(1 / 500), the Clopper-Pearson bounds at 500/500 and 0/500.
    scores = np.concatenate([np.arange(1000) + 5000.0, np.arange(1000.0)])
    is_member = np.arange(2000) < 1000
    q = 0.025 ** (1 / 500)
    assert epsilon_lower_bound(scores, is_member, alpha=0.05) == pytest.approx(math.log(q / (1 - q)), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epsilon_lower_bound_below_gaussian_dp_and_grows_with_mu(seed):
    delta = 1e-5
    bounds = []
    for mu in (0.5, 1.0, 2.0, 3.0):
        scores, is_member = _gaussian_scores(mu, 5000, seed)
        bound = epsilon_lower_bound(scores, is_member, delta=delta, seed=seed)
        # A valid lower bound never exceeds the mechanism's true epsilon at that delta.
        assert 0.0 <= bound <= _gdp_epsilon(mu, delta)
        bounds.append(bound)
    assert bounds == sorted(bounds) and bounds[-1] > bounds[0] + 2


@pytest.mark.parametrize("eps0", [0.5, 1.0, 2.0])
def test_epsilon_lower_bound_tight_and_valid_on_randomized_response(eps0):
    # Randomized response is exactly eps0-DP and its membership test is tight: the bound must come close to
    # eps0 with 20000 examples per class, and exceed it in at most about alpha = 5% of the runs.
    q = 1 / (1 + math.exp(-eps0))
    bounds = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        scores = np.r_[rng.random(20000) < q, rng.random(20000) < 1 - q].astype(float)
        bounds.append(epsilon_lower_bound(scores, np.arange(40000) < 20000, seed=seed))
    assert min(bounds) > eps0 - 0.12
    assert sum(b > eps0 for b in bounds) <= 2


def test_gdp_epsilon_helper_known_values():
    # 1-GDP at delta = 1e-5 is about (4.38, 1e-5)-DP; check the helper solves the curve it states.
    eps = _gdp_epsilon(1.0, 1e-5)
    assert 4.3 < eps < 4.45
    assert stats.norm.cdf(-eps + 0.5) - math.exp(eps) * stats.norm.cdf(-eps - 0.5) == pytest.approx(1e-5)


def test_epsilon_lower_bound_random_scores_near_zero():
    rng = np.random.default_rng(7)
    bounds = [epsilon_lower_bound(rng.normal(size=2000), rng.random(2000) < 0.5, seed=seed) for seed in range(5)]
    assert max(bounds) < 0.3


# --- evaluate ------------------------------------------------------------------------------------------------


def test_auc_matches_sklearn_and_interval_contains_it():
    scores, is_member = _gaussian_scores(0.7, 1000, seed=3)
    result = evaluate(scores, is_member)
    assert result.auc.value == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)
    assert result.auc.low < result.auc.value < result.auc.high
    # Known answer for the binormal model: AUC = Phi(mu / sqrt 2).
    assert result.auc.low < stats.norm.cdf(0.7 / math.sqrt(2)) < result.auc.high


def test_auc_interval_width_matches_hanley_mcneil():
    scores, is_member = _gaussian_scores(1.0, 1000, seed=4)
    result = evaluate(scores, is_member, n_bootstrap=2000)
    a, n = result.auc.value, 1000
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt((a * (1 - a) + (n - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (n * n))
    assert (result.auc.high - result.auc.low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.15)


def test_bootstrap_resample_auc_matches_weighted_sklearn():
    rng = np.random.default_rng(5)
    s_in, s_out = np.round(rng.normal(0.5, 1, 300), 1), np.round(rng.normal(0, 1, 200), 1)  # with ties
    aucs = metrics._bootstrap_auc(s_in, s_out, 3, np.random.default_rng(11))
    replay = np.random.default_rng(11)
    w, u = metrics._resample_counts(replay, 300, 3), metrics._resample_counts(replay, 200, 3)
    order = np.argsort(s_out, kind="stable")
    y = np.r_[np.ones(300), np.zeros(200)]
    for b in range(3):
        # u counts refer to s_out in sorted order, w counts to s_in as given.
        weights = np.r_[w[b], u[b][np.argsort(order)]]
        expected = roc_auc_score(y, np.r_[s_in, s_out], sample_weight=weights)
        assert aucs[b] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_is_fast():
    import time

    scores, is_member = _gaussian_scores(1.0, 1000, seed=0)
    start = time.perf_counter()
    metrics._bootstrap_auc(scores[is_member], scores[~is_member], 1000, np.random.default_rng(0))
    assert time.perf_counter() - start < 1.0


def test_perfect_separation():
    scores = np.r_[np.linspace(10, 11, 200), np.linspace(0, 1, 200)]
    result = evaluate(scores, np.arange(400) < 200)
    assert result.auc.value == result.auc.low == result.auc.high == 1.0
    assert result.advantage == 1.0
    assert all(t.tpr == 1.0 for t in result.tpr_at_fpr if t.supported)


def test_tpr_at_fpr_hand_computed():
    # Non-members score 0..999. 50 members above all of them, 50 just below the top 10 non-members.
    scores = np.r_[np.full(50, 2000.0), np.full(50, 989.5), np.arange(1000.0)]
    is_member = np.arange(1100) < 100
    result = evaluate(scores, is_member, fprs=(0.001, 0.01, 0.1))
    t001, t01, t1 = result.tpr_at_fpr
    assert (t001.tpr, t01.tpr, t1.tpr) == (0.5, 1.0, 1.0)
    assert (t001.low, t001.high) == clopper_pearson(50, 100)
    assert (t01.low, t01.high) == clopper_pearson(100, 100)
    assert result.advantage == pytest.approx(0.99)


def test_tpr_at_fpr_matches_brute_force():
    rng = np.random.default_rng(8)
    scores = np.round(np.r_[rng.normal(1, 1, 700), rng.normal(0, 1, 1300)], 2)
    is_member = np.arange(2000) < 700
    result = evaluate(scores, is_member, fprs=(0.001, 0.01, 0.1, 0.5))
    thresholds = np.r_[np.unique(scores), np.inf]
    tpr = np.array([(scores[is_member] >= t).mean() for t in thresholds])
    fpr = np.array([(scores[~is_member] >= t).mean() for t in thresholds])
    for entry in result.tpr_at_fpr:
        assert entry.tpr == pytest.approx(tpr[fpr <= entry.fpr].max())
    assert result.advantage == pytest.approx((tpr - fpr).max())


def test_tpr_at_low_fpr_unsupported_with_500_non_members():
    scores, is_member = _gaussian_scores(1.0, 500, seed=0)
    result = evaluate(scores, is_member)
    t0001, t001, _ = result.tpr_at_fpr
    assert not t0001.supported and t0001.tpr is None and t0001.low is None and t0001.high is None
    assert t001.supported and t001.tpr is not None


def test_deterministic_for_seed_and_json_ready():
    import json

    scores, is_member = _gaussian_scores(0.5, 800, seed=1)
    a, b = evaluate(scores, is_member, seed=3), evaluate(scores, is_member, seed=3)
    assert a == b and a.to_dict() == b.to_dict()
    assert evaluate(scores, is_member, seed=4).auc != a.auc
    encoded = json.loads(json.dumps(a.to_dict()))
    assert encoded["n_members"] == 800 and "roc_fpr" not in encoded
    assert [t["fpr"] for t in encoded["tpr_at_fpr"]] == [0.001, 0.01, 0.1]


def test_accepts_int_labels():
    scores, is_member = _gaussian_scores(1.0, 100, seed=0)
    assert evaluate(scores, is_member.astype(int)) == evaluate(scores, is_member)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        (np.zeros((2, 2)), np.array([True, False]), "1-D"),
        (np.zeros(3), np.array([True, False]), "length"),
        (np.array([0.0, np.nan]), np.array([True, False]), "NaN"),
        (np.array([0.0, np.inf]), np.array([True, False]), "infinite"),
        (np.zeros(3), np.array([True, True, True]), "both"),
        (np.zeros(2), np.array([0, 2]), "0/1"),
        (np.array(["a", "b"]), np.array([True, False]), "numeric"),
    ],
)
def test_invalid_inputs_raise(scores, labels, message):
    with pytest.raises(PrivauditError, match=message):
        evaluate(scores, labels)


def test_invalid_parameters_raise():
    scores, is_member = _gaussian_scores(1.0, 50, seed=0)
    for kwargs in ({"alpha": 0.0}, {"alpha": 1.5}, {"delta": -0.1}, {"fprs": (0.0,)}, {"n_bootstrap": 0}):
        with pytest.raises(PrivauditError):
            evaluate(scores, is_member, **kwargs)

"""privaudit/stats/groups.py: per-user aggregation and group privacy, against answers worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from privaudit.stats.groups import (
    AGGREGATES,
    DEFAULT_AGGREGATE,
    aggregate,
    choose_aggregate,
    group_index,
    group_privacy,
    records_per_user,
)


def test_group_index_keeps_first_appearance():
    users, inverse = group_index(["b", "a", "b", "c", "a"])
    assert users == ("b", "a", "c")
    assert inverse.tolist() == [0, 1, 0, 2, 1]
    assert records_per_user(inverse).tolist() == [2, 2, 1]


def test_aggregates_by_hand():
    scores = np.array([1.0, 5.0, 2.0, -1.0, 3.0, 4.0, 0.5])
    inverse = np.array([0, 0, 0, 1, 0, 1, 2])
    # user 0: 1, 5, 2, 3; user 1: -1, 4; user 2: 0.5
    np.testing.assert_allclose(aggregate(scores, inverse, "mean"), [11 / 4, 1.5, 0.5])
    np.testing.assert_allclose(aggregate(scores, inverse, "max"), [5.0, 4.0, 0.5])
    np.testing.assert_allclose(
        aggregate(scores, inverse, "logsumexp"),
        [math.log(math.exp(1) + math.exp(5) + math.exp(2) + math.exp(3)), logsumexp([-1.0, 4.0]), 0.5],
    )
    np.testing.assert_allclose(aggregate(scores, inverse, "top-k-mean"), [(5 + 3 + 2) / 3, 1.5, 0.5])


def test_aggregate_refuses_unknown_method_and_empty_user():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(np.ones(2), np.array([0, 1]), "median")
    with pytest.raises(ValueError, match="at least one record"):
        aggregate(np.ones(2), np.array([0, 2]), "mean")


def test_group_privacy_is_vadhans_lemma():
    # (k eps, k e^{(k-1) eps} delta): Vadhan 2017, Lemma 2.2.
    assert group_privacy(1.0, 1e-5, 1) == (1.0, 1e-5)
    eps, delta = group_privacy(1.0, 1e-5, 3)
    assert eps == 3.0
    assert delta == pytest.approx(3 * math.exp(2.0) * 1e-5)
    assert group_privacy(0.5, 0.0, 10) == (5.0, 0.0)  # pure DP: Dwork & Roth 2014, Theorem 2.2
    assert group_privacy(None, 1e-5, 4) is None
    big = group_privacy(8.0, 1e-5, 200)
    assert big[0] == 1600.0 and math.isinf(big[1])
    with pytest.raises(ValueError):
        group_privacy(1.0, 1e-5, 0)


def _world(kind: str, seed: int = 0):
    """Four reference models over 300 population users of 5 records; members stand out as ``kind`` says."""
    rng = np.random.default_rng(seed)
    k, n_users, per = 4, 300, 5
    inverse = np.repeat(np.arange(n_users), per)
    user_in = rng.random((k, n_users)) < 0.5
    record_in = user_in[:, inverse]
    scores = rng.normal(0.0, 1.0, (k, inverse.size))
    if kind == "one-record":  # one record of each member user is memorised hard: the maximum finds it
        first = np.r_[True, inverse[1:] != inverse[:-1]]
        scores += 6.0 * (record_in & first)
    else:  # every record of a member user is a little lower in loss: the mean finds it
        scores += 0.8 * record_in
    return scores, record_in, inverse


def test_choose_aggregate_finds_the_aggregation_that_fits_the_leak():
    method, tpr = choose_aggregate(*_world("one-record"))
    assert method == "max" and set(tpr) == set(AGGREGATES)
    assert tpr["max"] > tpr["mean"]
    method, tpr = choose_aggregate(*_world("every-record"))
    assert method in ("mean", "top-k-mean", "logsumexp")
    assert tpr[method] > tpr["max"]


def test_choose_aggregate_without_a_game_gives_the_default():
    scores = np.zeros((2, 6))
    inverse = np.repeat(np.arange(3), 2)
    assert choose_aggregate(scores, np.ones((2, 6), dtype=bool), inverse) == (DEFAULT_AGGREGATE, {})

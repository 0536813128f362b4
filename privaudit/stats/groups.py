"""User-level membership: record scores aggregated per owner, and group privacy. Pure numbers.

A user (any owner named by ``--group-by``) contributes several records; a user is a member when all of its records
are in the training set, a non-member when none is. An attack's record scores become one score per user by an
aggregation (:data:`AGGREGATES`, as PrivacyGuard's ``AggregationType``): the mean, the maximum, the log-sum-exp
(which grows with the number of records, as evidence adds up) or the mean of the :data:`TOP_K` highest.

Group privacy. A mechanism that is (ε, δ)-DP for one record is (kε, k·e^((k-1)ε)·δ)-DP for groups of k records
(Vadhan 2017, "The Complexity of Differential Privacy", Lemma 2.2; Dwork & Roth 2014, Theorem 2.2, for δ = 0): the
record-level guarantee bounds a user with k records only by that, which :func:`group_privacy` computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp

AGGREGATES = ("mean", "max", "logsumexp", "top-k-mean")
DEFAULT_AGGREGATE = "mean"
"""Used when the aggregation cannot be chosen on reference models (none, or none trained by privaudit)."""
TOP_K = 3
"""``top-k-mean``: the mean of a user's ``TOP_K`` highest record scores (all of them for a user with fewer)."""
CHOOSING_FPR = 0.01


def group_index(groups: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """The distinct owners in order of first appearance, and each record's position among them.

    Args:
        groups: each record's owner.

    Returns:
        ``(users, inverse)``: ``users[inverse[i]]`` is record ``i``'s owner.
    """
    order = dict.fromkeys(groups)
    position = {user: i for i, user in enumerate(order)}
    return tuple(order), np.fromiter((position[g] for g in groups), dtype=np.int64, count=len(groups))


def aggregate(scores: np.ndarray, inverse: np.ndarray, method: str, *, n_users: int | None = None) -> np.ndarray:
    """One score per user from its records' scores.

    Args:
        scores: record scores, ``(n,)``; higher means more likely a member.
        inverse: each record's user, ``(n,)``, in ``0 .. n_users - 1`` (from :func:`group_index`).
        method: one of :data:`AGGREGATES`.
        n_users: how many users (default ``inverse.max() + 1``); each must have at least one record.

    Returns:
        Shape ``(n_users,)``.

    Raises:
        ValueError: an unknown method, or a user without records.
    """
    scores = np.asarray(scores, dtype=np.float64)
    inverse = np.asarray(inverse, dtype=np.int64)
    n_users = int(inverse.max()) + 1 if n_users is None else n_users
    counts = np.bincount(inverse, minlength=n_users)
    if (counts == 0).any():
        raise ValueError("every user needs at least one record")
    if method == "mean":
        return np.bincount(inverse, weights=scores, minlength=n_users) / counts
    if method == "max":
        out = np.full(n_users, -np.inf)
        np.maximum.at(out, inverse, scores)
        return out
    if method not in ("logsumexp", "top-k-mean"):
        raise ValueError(f"unknown aggregation {method!r}; choose from {', '.join(AGGREGATES)}")
    order = np.lexsort((-scores, inverse))  # by user, then highest score first
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = np.empty(n_users)
    for user in range(n_users):
        own = scores[order[starts[user] : starts[user] + counts[user]]]
        out[user] = logsumexp(own) if method == "logsumexp" else own[:TOP_K].mean()
    return out


def records_per_user(inverse: np.ndarray, n_users: int | None = None) -> np.ndarray:
    """How many records each user has, ``(n_users,)``."""
    inverse = np.asarray(inverse, dtype=np.int64)
    return np.bincount(inverse, minlength=int(inverse.max()) + 1 if n_users is None else n_users)


def _tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float) -> float:
    negatives = np.sort(scores[~is_member])[::-1]
    allowed = int(np.floor(fpr * negatives.size))
    if allowed >= negatives.size:
        return 1.0
    return float((scores[is_member] > negatives[allowed]).mean())


def _auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    return float((ranks[is_member].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def choose_aggregate(
    record_scores: np.ndarray, record_in: np.ndarray, inverse: np.ndarray, *, methods: Sequence[str] = AGGREGATES
) -> tuple[str, dict[str, float]]:
    """The aggregation that best tells each reference model's member users from its non-member users.

    As RMIA's ``a`` is tuned (Zarifzadeh et al. 2024), each reference model in turn is the target: the population
    users it trained on are the members, the others the non-members, and ``record_scores[j]`` are an attack's record
    scores against it. The aggregation with the highest TPR at :data:`CHOOSING_FPR`, averaged over the reference
    models, is kept (ties: the higher mean AUC, then the order of ``methods``). No audited user's membership is used.

    Args:
        record_scores: per reference model, a membership score of each population record, ``(K, m)``.
        record_in: whether each population record was in each reference model's training set, ``(K, m)``; a user's
            records are all in or all out.
        inverse: each population record's user (:func:`group_index`), ``(m,)``.
        methods: the aggregations to try.

    Returns:
        ``(method, tpr)``: the chosen method and each method's mean TPR at :data:`CHOOSING_FPR`;
        :data:`DEFAULT_AGGREGATE` and ``{}`` when no reference model has both member and non-member users.
    """
    record_scores = np.asarray(record_scores, dtype=np.float64)
    record_in = np.asarray(record_in, dtype=bool)
    inverse = np.asarray(inverse, dtype=np.int64)
    n_users = int(inverse.max()) + 1
    tpr = dict.fromkeys(methods, 0.0)
    auc = dict.fromkeys(methods, 0.0)
    games = 0
    for j in range(record_scores.shape[0]):
        user_in = np.zeros(n_users, dtype=bool)
        user_in[inverse[record_in[j]]] = True
        if user_in.all() or not user_in.any():
            continue
        games += 1
        for method in methods:
            user_scores = aggregate(record_scores[j], inverse, method, n_users=n_users)
            tpr[method] += _tpr_at_fpr(user_scores, user_in, CHOOSING_FPR)
            auc[method] += _auc(user_scores, user_in)
    if games == 0:
        return DEFAULT_AGGREGATE, {}
    best = max(methods, key=lambda m: (tpr[m], auc[m], -methods.index(m)))
    return best, {m: tpr[m] / games for m in methods}


def group_privacy(epsilon: float | None, delta: float, k: int) -> tuple[float, float] | None:
    """The (ε, δ) a record-level (``epsilon``, ``delta``)-DP guarantee gives a group of ``k`` records.

    (kε, k·e^((k-1)ε)·δ): Vadhan 2017, Lemma 2.2 (Dwork & Roth 2014, Theorem 2.2, for δ = 0). A δ at or above 1
    says nothing; it is returned as is (``inf`` when it overflows) for the report to mark.

    Args:
        epsilon: the record-level ε; ``None`` (no DP) gives ``None``.
        delta: the record-level δ.
        k: the group's size, ``>= 1``.
    """
    if epsilon is None:
        return None
    if k < 1:
        raise ValueError(f"a group has at least one record, got k={k}")
    if math.isinf(epsilon):
        return math.inf, k * delta if k == 1 else math.inf
    exponent = (k - 1) * epsilon
    group_delta = math.inf if exponent > 700 else k * math.exp(exponent) * delta
    return k * epsilon, group_delta

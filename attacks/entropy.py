"""Entropy attacks: members get more confident, lower-entropy predictions."""

from __future__ import annotations

import numpy as np
from scipy.special import entr

from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals
from privaudit.stats.logits import log_softmax


def prediction_entropy(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy ``-sum_i p_i log p_i`` of each softmax prediction, shape ``(n,)``."""
    # entr(p) = -p log p, with entr(0) = 0 for classes whose logit is -inf
    return entr(np.exp(log_softmax(np.asarray(logits, dtype=np.float64)))).sum(axis=-1)


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal's modified entropy ``Mentr``, which uses the true label, shape ``(n,)``.

    Args:
        logits: shape ``(n, C)``.
        labels: true label ids, shape ``(n,)``.

    Returns:
        ``Mentr(p, y)``: 0 for a correct prediction with ``p_y = 1``, large for a confident wrong one.
    """
    logp = log_softmax(np.asarray(logits, dtype=np.float64))
    p = np.exp(logp)
    one_minus_p = -np.expm1(logp)  # keeps precision when p is close to 1
    # Clip at the smallest normal float so a wrong class predicted with p = 1.0 gives a large finite Mentr,
    # as Song & Mittal's reference code clips its logarithms.
    log_1mp = np.log(np.maximum(one_minus_p, np.finfo(np.float64).tiny))
    is_label = np.arange(logp.shape[-1]) == np.asarray(labels)[:, None]
    # Song & Mittal 2021, definition of Mentr: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    true_term = np.where(is_label, one_minus_p * logp, 0.0).sum(axis=-1)
    other_terms = np.where(is_label, 0.0, p * log_1mp).sum(axis=-1)
    return -true_term - other_terms


class EntropyAttack(Attack):
    """Score each example by the negative entropy of the target model's prediction (label-free)."""

    name = "entropy"
    description = "Negative prediction entropy of the target model (label-free)"
    requires = frozenset({"logits"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``-H(p)``; higher means more likely a member."""
        self.check(signals)
        return -prediction_entropy(signals.logits)


class ModifiedEntropyAttack(Attack):
    """Score each example by its negative modified entropy.

    Song & Mittal, "Systematic Evaluation of Privacy Risks of Machine Learning Models", USENIX Security 2021.
    Unlike plain entropy, a confident *wrong* prediction scores as a likely non-member.
    """

    name = "modified-entropy"
    description = "Negative modified prediction entropy, label-aware (Song & Mittal 2021)"
    requires = frozenset({"logits"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``-Mentr(p, y)``; higher means more likely a member."""
        self.check(signals)
        return -modified_entropy(signals.logits, signals.labels)

"""Confidence attack: members get a higher probability on their true label."""

from __future__ import annotations

import numpy as np

from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals


class ConfidenceAttack(Attack):
    """Score each example by the target model's probability of its true label, ``p_y``.

    A monotone transform of the LOSS score, so it ranks examples the same way; kept because ``p_y`` is the
    number practitioners read (Salem et al. 2019 use the top probability in the same spirit).

    It reads only the classes the target returns, so it also runs on a top-k endpoint: where the true label is not
    among the returned classes, ``p_y`` is taken at its upper bound, ``min(lowest returned score, 1 - sum of the
    returned scores)``, which ranks such an example below every example whose true label was returned with a higher
    score. With every class known (a local model, full probabilities) it is exactly ``exp(-loss)``.
    """

    name = "confidence"
    description = "Target model's probability of the true label (top-k endpoints: its upper bound where absent)"
    requires = frozenset({"top_k"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``p_y``; higher means more likely a member."""
        self.check(signals)
        p = np.exp(signals.class_log_probs())
        labels = np.asarray(signals.labels)
        p_y = p[np.arange(len(labels)), labels]
        absent = np.isnan(p_y)
        if absent.any():
            returned = np.nan_to_num(p[absent], nan=0.0)
            lowest = np.where(np.isnan(p[absent]), np.inf, p[absent]).min(axis=-1)
            p_y[absent] = np.minimum(lowest, np.clip(1.0 - returned.sum(axis=-1), 0.0, None))
        return p_y

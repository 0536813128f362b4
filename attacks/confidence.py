"""Confidence attack: members get a higher probability on their true label."""

from __future__ import annotations

import numpy as np

from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals
from privaudit.stats.logits import losses


class ConfidenceAttack(Attack):
    """Score each example by the target model's probability of its true label, ``p_y``.

    A monotone transform of the LOSS score, so it ranks examples the same way; kept because ``p_y`` is the
    number practitioners read (Salem et al. 2019 use the top probability in the same spirit).
    """

    name = "confidence"
    description = "Target model's probability of the true label"
    requires = frozenset({"logits"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``p_y = exp(-loss)``; higher means more likely a member."""
        self.check(signals)
        return np.exp(-losses(signals.logits, signals.labels))

"""LOSS attack (Yeom et al. 2018): members have lower loss."""

from __future__ import annotations

import numpy as np

from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals
from privaudit.stats.logits import losses


class LossAttack(Attack):
    """Score each example by its negative cross-entropy loss under the target model.

    Yeom et al., "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF 2018.
    """

    name = "loss"
    description = "Negative cross-entropy loss of the target model (Yeom et al. 2018)"
    requires = frozenset({"logits"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``-loss(x, y)``; higher means more likely a member."""
        self.check(signals)
        return -losses(signals.logits, signals.labels)

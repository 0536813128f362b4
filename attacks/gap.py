"""Gap attack (Yeom et al. 2018): a correctly classified example is guessed a member, a misclassified one not."""

from __future__ import annotations

import numpy as np

from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals


class GapAttack(Attack):
    """Score each example 1 when the target predicts its true label, else 0.

    Yeom et al., "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF 2018: the attack
    whose advantage is the generalization gap. It reads only the predicted label, so it runs on label-only endpoints;
    with two score values its ROC curve has a single corner.
    """

    name = "gap"
    description = "Correct prediction or not (Yeom et al. 2018); label-only"
    requires = frozenset({"labels"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return 1.0 for a correct prediction, 0.0 for a wrong one."""
        self.check(signals)
        return (signals.predicted_labels() == np.asarray(signals.labels)).astype(np.float64)

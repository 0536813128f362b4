"""Difficulty-calibrated LOSS attack (Watson et al. 2022) against OUT reference models."""

from __future__ import annotations

import numpy as np

from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals
from privaudit.stats.logits import losses

from ._reference import fill_missing, masked_mean


class ReferenceLossAttack(Attack):
    """Score each example by its target loss, calibrated by its mean loss under OUT reference models.

    Watson et al., "On the Importance of Difficulty Calibration in Membership Inference Attacks", ICLR 2022.
    Offline: only reference models trained without the example (``reference_in`` False) are used. An example
    that no reference model excluded is calibrated by the mean OUT loss over all other examples.
    """

    name = "reference-loss"
    description = "Target loss minus mean loss of OUT reference models (Watson et al. 2022)"
    requires = frozenset({"logits", "reference_logits"})

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``-(loss_target(x) - mean_OUT loss_ref(x))``; higher means more likely a member."""
        self.check(signals)
        target_loss = losses(signals.logits, signals.labels)
        reference_loss = losses(signals.reference_logits, signals.labels)  # (K, n)
        mean_out, _ = masked_mean(reference_loss, ~np.asarray(signals.reference_in, dtype=bool))
        # Watson et al. 2022, Sec. 3 (difficulty calibration): calibrated loss = loss(target) - loss(reference)
        return -(target_loss - fill_missing(mean_out))

"""Robust Membership Inference Attack, RMIA (Zarifzadeh et al. 2024).

Zarifzadeh, Liu, Kuhn, Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML 2024.
RMIA compares the audited example ``x`` with population examples ``z`` (non-members) through the pairwise
likelihood ratio ``LR(x, z) = [p(x|theta) / Pr(x)] / [p(z|theta) / Pr(z)]``, where ``p(.|theta)`` is the
target model's probability of the true label and ``Pr(.)`` its average over reference models. The score of
``x`` is the fraction of ``z`` with ``LR(x, z) > gamma``.

``Pr(x)`` from the reference models, per example:

* with both IN and OUT reference models for ``x`` (online), ``Pr(x) = (mean_IN + mean_OUT) / 2``: the
  average over models trained with and without ``x`` in equal measure, as in the paper's setting where each
  example is in half of the reference models. With random inclusion the plain mean over all models would
  over-weight whichever side has more models.
* with OUT models only (offline), the paper's linear approximation
  ``Pr(x) = ((1 + a) mean_OUT + (1 - a)) / 2``, with ``a`` (default 0.3, the offline value the paper and
  privacy-meter use; tune it on reference models if a held-out one is available).
* with IN models only, ``Pr(x) = mean_IN``: an over-estimate, so the attack errs towards "non-member".

Population examples are OUT for every reference model, so ``Pr(z)`` always uses the offline approximation.
"""

from __future__ import annotations

import numpy as np

from privaudit.attack import Attack
from privaudit.errors import PrivauditError
from privaudit.registry import register_attack
from privaudit.signals import Signals, losses

from ._reference import masked_mean

_TINY = np.finfo(np.float64).tiny  # keeps Pr(.) positive when a = 1 and every OUT probability underflows


def fraction_dominated(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """For each ``x``, the fraction of ``z`` with ``ratio_x / ratio_z > gamma``, in ``O((n + m) log m)``.

    For positive ``ratio_z``, ``ratio_x / ratio_z > gamma`` is ``ratio_z < ratio_x / gamma``, so one sort of
    ``ratio_z`` and a binary search per ``x`` replace the ``n * m`` comparisons.

    Args:
        ratio_x: ``p(x|theta) / Pr(x)`` per audited example, shape ``(n,)``, non-negative.
        ratio_z: ``p(z|theta) / Pr(z)`` per population example, shape ``(m,)``, non-negative.
        gamma: the threshold on the pairwise likelihood ratio, positive.

    Returns:
        Fractions in ``[0, 1]``, shape ``(n,)``.
    """
    sorted_z = np.sort(np.asarray(ratio_z, dtype=np.float64))
    # side="left" counts z strictly below the threshold: LR(x, z) > gamma is strict.
    below = np.searchsorted(sorted_z, np.asarray(ratio_x, dtype=np.float64) / gamma, side="left")
    return below / sorted_z.size


def _offline_marginal(mean_out: np.ndarray, a: float) -> np.ndarray:
    # Zarifzadeh et al. 2024, offline approximation: Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2
    return 0.5 * ((1.0 + a) * mean_out + (1.0 - a))


@register_attack
class RMIA(Attack):
    """RMIA: pairwise likelihood ratios against population examples, calibrated by reference models."""

    name = "rmia"
    description = "Pairwise likelihood ratio vs population samples (Zarifzadeh et al. 2024)"
    requires = frozenset({"logits", "reference_logits", "population_logits", "population_reference_logits"})

    def __init__(self, *, a: float = 0.3, gamma: float = 1.0) -> None:
        """Store the parameters.

        Args:
            a: offline scaling in ``Pr(x) = ((1 + a) mean_OUT + (1 - a)) / 2``, in ``[0, 1]``; 0.3 is the
                paper's offline choice. Unused for examples with IN reference models.
            gamma: threshold on the pairwise likelihood ratio ``LR(x, z)``, positive; 1 counts the population
                examples that ``x`` beats.
        """
        super().__init__(a=a, gamma=gamma)

    def check(self, signals: Signals) -> None:
        """See :meth:`Attack.check`; also checks ``a``, ``gamma`` and the population reference logits' shape."""
        super().check(signals)
        if not 0.0 <= float(self.a) <= 1.0:
            raise PrivauditError(f"attack 'rmia': a must be between 0 and 1, got {self.a}")
        if not float(self.gamma) > 0.0:
            raise PrivauditError(f"attack 'rmia': gamma must be positive, got {self.gamma}")
        expected = (signals.n_reference_models, *signals.population_logits.shape)
        if signals.population_reference_logits.shape != expected:
            raise PrivauditError(
                f"attack 'rmia': population reference logits have shape "
                f"{signals.population_reference_logits.shape}, expected {expected}"
            )

    def marginals(self, signals: Signals) -> tuple[np.ndarray, np.ndarray]:
        """``Pr(x)`` for the audited examples and ``Pr(z)`` for the population, from the reference models.

        Args:
            signals: signals that pass :meth:`check`.

        Returns:
            ``(pr_x, pr_z)`` of shapes ``(n,)`` and ``(m,)``.
        """
        reference_p = np.exp(-losses(signals.reference_logits, signals.labels))  # (K, n)
        reference_in = np.asarray(signals.reference_in, dtype=bool)
        mean_in, count_in = masked_mean(reference_p, reference_in)
        mean_out, count_out = masked_mean(reference_p, ~reference_in)
        pr_x = np.where(
            count_out == 0,
            mean_in,
            np.where(count_in > 0, 0.5 * (mean_in + mean_out), _offline_marginal(mean_out, self.a)),
        )
        population_p = np.exp(-losses(signals.population_reference_logits, signals.population_labels))
        pr_z = _offline_marginal(population_p.mean(axis=0), self.a)
        return np.maximum(pr_x, _TINY), np.maximum(pr_z, _TINY)

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``Pr_z[LR(x, z) > gamma]`` over the population, ties broken by ``LR(x)``; higher = member.

        With finitely many z-samples the fraction saturates: many of the strongest members (and some non-members)
        all dominate every z and score exactly 1.0, which hides the low-FPR regime. The count is monotone in
        ``LR(x)``, so breaking its ties by ``LR(x)`` keeps the paper's order and only resolves those ties: the
        score is the fraction plus a tie-breaker smaller than one z-sample's share, ``1 / (m + 1)``.
        """
        self.check(signals)
        pr_x, pr_z = self.marginals(signals)
        p_x = np.exp(-losses(signals.logits, signals.labels))
        p_z = np.exp(-losses(signals.population_logits, signals.population_labels))
        # Zarifzadeh et al. 2024: LR(x, z) = (p(x|theta) / Pr(x)) / (p(z|theta) / Pr(z)); score = Pr_z[LR > gamma]
        ratio_x = p_x / pr_x
        fraction = fraction_dominated(ratio_x, p_z / pr_z, float(self.gamma))
        order = np.argsort(np.argsort(ratio_x, kind="stable"), kind="stable")
        return fraction + order / (len(ratio_x) * (len(p_z) + 1))

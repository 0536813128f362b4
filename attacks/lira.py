"""Likelihood Ratio Attack, online and offline (Carlini et al. 2022).

Carlini, Chien, Nasr, Song, Terzis, Tramer, "Membership Inference Attacks From First Principles", IEEE S&P 2022.
Both variants fit Gaussians, per audited example, to the reference models' logit-scaled confidence on it:

* ``lira-online`` fits an IN Gaussian (models trained with the example) and an OUT Gaussian (models trained
  without it) and scores the log-likelihood ratio of the target model's confidence (Algorithm 1).
* ``lira-offline`` fits the OUT Gaussian only and scores a one-sided test: the log-probability that an OUT
  model's confidence is *below* the target's, ``log Phi((phi - mu_out) / sigma_out)``.

Variance. With few reference models the per-example variance is noisy, and the paper recommends a single
global variance when only a few shadow models are available. ``fixed_variance=None`` (the default) picks it
automatically: global variance with fewer than :data:`FIXED_VARIANCE_BELOW` reference models, per-example
variance otherwise. The global variance is the *pooled within-example* variance (squared deviations from each
example's own mean, over all examples), so differences in difficulty between examples do not inflate it.
Means are sample means (the reference code uses medians; with Gaussian fits the two agree).

Fallbacks. Online, an example with no IN (or no OUT) reference model gets its missing mean from the other side
shifted by the average IN-OUT gap over the examples that have both. Offline, an example with no OUT model is
tested against the OUT confidences of all examples pooled (their mean and total variance). An example with
fewer than two models on a side gets the pooled variance.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

from privaudit.errors import PrivauditError
from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals

from ._reference import masked_mean

FIXED_VARIANCE_BELOW = 32
"""With fewer reference models than this, ``fixed_variance=None`` uses the global (pooled) variance."""

_MIN_VARIANCE = 1e-8  # keeps a side whose reference confidences all coincide from dividing by zero


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's statistic ``phi = log(p_y / (1 - p_y))``, computed stably from logits.

    Carlini et al. 2022, "logit scaling": ``phi(p) = log(p / (1 - p))``. With softmax ``p``, this equals
    ``z_y - logsumexp_{j != y} z_j``, which stays finite where ``p_y`` rounds to 1.

    Args:
        logits: shape ``(n, C)`` or ``(K, n, C)``, with ``C >= 2``.
        labels: true label ids, shape ``(n,)``.

    Returns:
        ``phi`` of shape ``(n,)`` or ``(K, n)``.
    """
    z = np.asarray(logits, dtype=np.float64)
    index = np.broadcast_to(np.asarray(labels), z.shape[:-1])[..., None]
    z_true = np.take_along_axis(z, index, axis=-1)[..., 0]
    is_label = np.arange(z.shape[-1]) == index
    others = np.where(is_label, -np.inf, z)
    top = others.max(axis=-1, keepdims=True)
    logsumexp_others = top[..., 0] + np.log(np.exp(others - top).sum(axis=-1))
    return z_true - logsumexp_others


def _fit_gaussians(phi: np.ndarray, mask: np.ndarray, fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-example Gaussian fit of ``phi`` (shape ``(K, n)``) over the models where ``mask`` is ``True``.

    Returns:
        ``(mean, variance)`` of shape ``(n,)``; ``mean`` is NaN for an example with no model in ``mask``.
    """
    mean, count = masked_mean(phi, mask)
    squared_deviation = np.where(mask, (phi - np.nan_to_num(mean)) ** 2, 0.0).sum(axis=0)
    dof = int(count.sum() - (count > 0).sum())
    if dof > 0:
        pooled = squared_deviation.sum() / dof
    else:  # every example seen by one model at most: the spread across examples is all there is
        pooled = float(np.var(phi[mask]))
    if fixed_variance:
        variance = np.full(mean.shape, pooled)
    else:
        variance = np.divide(squared_deviation, count - 1, out=np.full(mean.shape, pooled), where=count >= 2)
    return mean, np.maximum(variance, _MIN_VARIANCE)


def _gaussian_log_density(x: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    # The -0.5 log(2 pi) constant is dropped: it cancels in the likelihood ratio.
    return -0.5 * (x - mean) ** 2 / variance - 0.5 * np.log(variance)


class _LiRA(Attack):
    """Shared parameters and statistics of the two LiRA variants."""

    requires = frozenset({"logits", "reference_logits"})

    def __init__(self, *, fixed_variance: bool | None = None) -> None:
        """Store the parameters.

        Args:
            fixed_variance: use one pooled variance for all examples (``True``) or a per-example variance
                (``False``); ``None`` picks ``True`` when there are fewer than :data:`FIXED_VARIANCE_BELOW`
                reference models, as Carlini et al. recommend for small numbers of shadow models.
        """
        super().__init__(fixed_variance=fixed_variance)

    def check(self, signals: Signals) -> None:
        """See :meth:`Attack.check`; also requires at least two classes and a bool-or-None ``fixed_variance``."""
        super().check(signals)
        if signals.logits.shape[-1] < 2:
            raise PrivauditError(f"attack '{self.name}' needs logits for at least two classes")
        if self.fixed_variance not in (None, True, False):
            raise PrivauditError(
                f"attack '{self.name}': fixed_variance must be true, false or unset, got {self.fixed_variance!r}"
            )

    def _uses_fixed_variance(self, signals: Signals) -> bool:
        if self.fixed_variance is None:
            return signals.n_reference_models < FIXED_VARIANCE_BELOW
        return bool(self.fixed_variance)

    def _statistics(self, signals: Signals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Target ``phi`` (n,), reference ``phi`` (K, n) and ``reference_in`` (K, n) as bool."""
        target_phi = logit_scaled_confidence(signals.logits, signals.labels)
        reference_phi = logit_scaled_confidence(signals.reference_logits, signals.labels)
        return target_phi, reference_phi, np.asarray(signals.reference_in, dtype=bool)


class LiRAOnline(_LiRA):
    """Online LiRA: Gaussian log-likelihood ratio between IN and OUT reference models, per example."""

    name = "lira-online"
    description = "Likelihood ratio of IN vs OUT reference Gaussians per example (Carlini et al. 2022)"
    online = True

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``; higher means more likely a member."""
        self.check(signals)
        phi, reference_phi, reference_in = self._statistics(signals)
        fixed = self._uses_fixed_variance(signals)
        mean_in, var_in = _fit_gaussians(reference_phi, reference_in, fixed)
        mean_out, var_out = _fit_gaussians(reference_phi, ~reference_in, fixed)
        # Fallback for examples missing one side: borrow the other side's mean, shifted by the average gap.
        both = ~np.isnan(mean_in) & ~np.isnan(mean_out)
        if both.any():
            gap = float(np.mean(mean_in[both] - mean_out[both]))
        else:
            gap = float(np.nanmean(mean_in) - np.nanmean(mean_out))
        mean_in = np.where(np.isnan(mean_in), mean_out + gap, mean_in)
        mean_out = np.where(np.isnan(mean_out), mean_in - gap, mean_out)
        # Carlini et al. 2022, Algorithm 1: Lambda = p(phi | N(mu_in, s_in^2)) / p(phi | N(mu_out, s_out^2))
        return _gaussian_log_density(phi, mean_in, var_in) - _gaussian_log_density(phi, mean_out, var_out)


class LiRAOffline(_LiRA):
    """Offline LiRA: one-sided test against the OUT reference models only."""

    name = "lira-offline"
    description = "One-sided Gaussian test against OUT reference models only (Carlini et al. 2022, offline)"

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``log Phi((phi - mu_out) / s_out)``; higher means more likely a member.

        Scores near 0 mean the target is more confident than nearly every OUT model. Very large z-values
        (above ~37) all round to ``-0.0``, and tie.
        """
        self.check(signals)
        phi, reference_phi, reference_in = self._statistics(signals)
        out = ~reference_in
        mean_out, var_out = _fit_gaussians(reference_phi, out, self._uses_fixed_variance(signals))
        # Fallback for an example no OUT model saw: the null is then the spread of OUT confidences over all
        # examples, whose wider variance keeps such examples from crowding the low-FPR end uncalibrated.
        missing = np.isnan(mean_out)
        if missing.any():
            mean_out = np.where(missing, reference_phi[out].mean(), mean_out)
            var_out = np.where(missing, max(float(reference_phi[out].var()), _MIN_VARIANCE), var_out)
        # Carlini et al. 2022, Algorithm 1 (offline variant): one-sided test, Pr[N(mu_out, s_out^2) < phi], in log space
        return log_ndtr((phi - mean_out) / np.sqrt(var_out))

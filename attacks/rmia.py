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
  ``Pr(x) = ((1 + a) mean_OUT + (1 - a)) / 2``.
* with IN models only, ``Pr(x) = mean_IN``: an over-estimate, so the attack errs towards "non-member".

``Pr(z)`` uses the offline approximation over the reference models trained without ``z``, as in the paper, where
the z-samples are OUT of every reference model. privaudit's reference models are trained on the population, so
each z is IN some of them: those are left out of its mean, and a z that is IN every reference model is not used.

Choosing ``a``. The paper tunes ``a`` by attacking one reference model with the others. With ``a=None`` (the
default) and reference models whose population training sets are known, :func:`tune_a` does that: each reference
model in turn is the target, the population examples IN and OUT of it are the members and non-members, the other
models and the audited model (trained without any population example: an OUT reference for all of them) are its
references, and the ``a`` with the highest mean TPR at 1% FPR is kept (low FPR is what an audit reads; AUC, which
privacy-meter maximises, favours a smaller ``a``). No audited example's membership is used. For reference models
not trained by privaudit (``--reference-dir``), ``a`` is :data:`DEFAULT_A`, the paper's offline value.

Temperature. Every probability RMIA reads is ``p(x|theta) = softmax(logits / T)[y]``, as in Zarifzadeh et al. 2024
(who treat the softmax temperature as a hyperparameter) and PrivacyGuard's RMIA (``temperature``, default 2); ``T=1`` is
the plain softmax. With ``temperature=None`` (the default) ``T`` is tuned together with ``a`` in the same game
(:func:`tune_a_and_temperature`), over :data:`TEMPERATURE_GRID`; without the population's membership of the reference
models it is :data:`DEFAULT_TEMPERATURE`.

Ranking. For one population and a fixed ``gamma``, the fraction of z-samples that ``x`` dominates is a step
function of ``LR(x) = p(x|theta) / Pr(x)``; with its ties broken by ``LR(x)`` (see :meth:`RMIA.score`), RMIA ranks
the audited examples exactly by ``LR(x)``: ``a`` decides the ranking, the population and ``gamma`` only the scale.
"""

from __future__ import annotations

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals
from privaudit.stats.logits import losses

from ._reference import masked_mean

DEFAULT_A = 0.3
"""The paper's offline ``a``, used when it cannot be tuned on the reference models."""

A_GRID = tuple(round(0.1 * i, 1) for i in range(11))
"""Values of ``a`` tried by :func:`tune_a`, as in privacy-meter's ``tune_offline_a``."""

TUNING_FPR = 0.01

DEFAULT_TEMPERATURE = 1.0
"""The plain softmax, used when the temperature cannot be tuned on the reference models."""

TEMPERATURE_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
"""Softmax temperatures tried by :func:`tune_a_and_temperature` (PrivacyGuard's RMIA default, 2, among them)."""

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


def _tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float) -> float:
    """TPR of the strictest threshold whose FPR is at most ``fpr`` (ties count whole)."""
    negatives = np.sort(scores[~is_member])[::-1]
    allowed = int(np.floor(fpr * negatives.size))
    if allowed >= negatives.size:
        return 1.0
    return float((scores[is_member] > negatives[allowed]).mean())


def _stack_target(population_p, population_in, target_population_p):
    population_p = np.asarray(population_p, dtype=np.float64)
    population_in = np.asarray(population_in, dtype=bool)
    if target_population_p is not None:
        population_p = np.vstack([population_p, np.asarray(target_population_p, dtype=np.float64)[None]])
        population_in = np.vstack([population_in, np.zeros((1, population_in.shape[1]), dtype=bool)])
    return population_p, population_in


def _game_tpr(population_p: np.ndarray, population_in: np.ndarray, grid: tuple[float, ...]) -> tuple[np.ndarray, int]:
    """Summed TPR at :data:`TUNING_FPR` of each ``a`` in ``grid`` over the games, and the number of games played."""
    k = population_p.shape[0]
    tpr = np.zeros(len(grid))
    games = 0
    for j in range(k):
        others = np.arange(k) != j
        mean_out, count_out = masked_mean(population_p[others], ~population_in[others])
        usable = count_out > 0  # the offline game: only references trained without the example
        is_member = population_in[j, usable]
        if is_member.all() or not is_member.any():
            continue
        games += 1
        for g, a in enumerate(grid):
            ratio = population_p[j, usable] / np.maximum(_offline_marginal(mean_out[usable], a), _TINY)
            tpr[g] += _tpr_at_fpr(ratio, is_member, TUNING_FPR)
    return tpr, games


def tune_a(
    population_p: np.ndarray,
    population_in: np.ndarray,
    target_population_p: np.ndarray | None = None,
    grid: tuple[float, ...] = A_GRID,
) -> float:
    """The offline ``a`` that best attacks each reference model with the others (Zarifzadeh et al. 2024).

    The audited model itself was trained without any population example, so it joins the others as one more OUT
    reference (never as a target: none of the population is its member). Each game then has as many references as
    the real attack, and one reference model is enough to tune on.

    Args:
        population_p: each reference model's probability of the true label on the population, shape ``(K, m)``.
        population_in: whether each population example was in each reference model's training set, ``(K, m)``.
        target_population_p: the audited model's probability of the true label on the population, ``(m,)``.
        grid: the values of ``a`` to try.

    Returns:
        The ``a`` in ``grid`` with the highest TPR at :data:`TUNING_FPR`, averaged over the reference models as
        targets; ties go to the value nearest :data:`DEFAULT_A`. :data:`DEFAULT_A` when no game can be played.
    """
    tpr, games = _game_tpr(*_stack_target(population_p, population_in, target_population_p), grid)
    if games == 0:
        return DEFAULT_A
    best = np.flatnonzero(tpr == tpr.max())
    return float(grid[min(best, key=lambda g: abs(grid[g] - DEFAULT_A))])


def tune_a_and_temperature(
    population_logits: np.ndarray,
    population_labels: np.ndarray,
    population_in: np.ndarray,
    target_population_logits: np.ndarray | None = None,
    *,
    a_grid: tuple[float, ...] = A_GRID,
    temperature_grid: tuple[float, ...] = TEMPERATURE_GRID,
) -> tuple[float, float]:
    """``a`` and the softmax temperature ``T`` that best attack each reference model with the others.

    The same games as :func:`tune_a` (the audited model as one more OUT reference, no audited example's membership
    used), played on ``softmax(logits / T)`` for every ``T`` in ``temperature_grid``.

    Args:
        population_logits: each reference model's logits on the population, shape ``(K, m, C)``.
        population_labels: the population's label ids, ``(m,)``.
        population_in: whether each population example was in each reference model's training set, ``(K, m)``.
        target_population_logits: the audited model's logits on the population, ``(m, C)``.
        a_grid: the values of ``a`` to try; one value fixes ``a``.
        temperature_grid: the temperatures to try; one value fixes ``T``.

    Returns:
        ``(a, T)`` with the highest mean TPR at :data:`TUNING_FPR`; ties go to the ``T`` nearest
        :data:`DEFAULT_TEMPERATURE`, then the ``a`` nearest :data:`DEFAULT_A`. The defaults when no game can be
        played.
    """
    scores = []
    for temperature in temperature_grid:
        population_p = tempered_p(population_logits, population_labels, temperature)
        target_p = None
        if target_population_logits is not None:
            target_p = tempered_p(target_population_logits, population_labels, temperature)
        tpr, games = _game_tpr(*_stack_target(population_p, population_in, target_p), a_grid)
        if games == 0:
            return (a_grid[0] if len(a_grid) == 1 else DEFAULT_A), (
                temperature_grid[0] if len(temperature_grid) == 1 else DEFAULT_TEMPERATURE
            )
        scores.append(tpr)
    table = np.asarray(scores)  # (temperatures, a values)
    best = np.argwhere(table == table.max())
    t, g = min(
        best, key=lambda tg: (abs(temperature_grid[tg[0]] - DEFAULT_TEMPERATURE), abs(a_grid[tg[1]] - DEFAULT_A))
    )
    return float(a_grid[g]), float(temperature_grid[t])


def tempered_p(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)`` of the true label, on ``(n, C)`` or ``(K, n, C)`` logits."""
    return np.exp(-losses(np.asarray(logits, dtype=np.float64) / float(temperature), labels))


class RMIA(Attack):
    """RMIA: pairwise likelihood ratios against population examples, calibrated by reference models."""

    name = "rmia"
    description = "Pairwise likelihood ratio vs population samples (Zarifzadeh et al. 2024)"
    requires = frozenset({"logits", "reference_logits", "population_logits", "population_reference_logits"})

    def __init__(self, *, a: float | None = None, gamma: float = 1.0, temperature: float | None = None) -> None:
        """Store the parameters.

        Args:
            a: offline scaling in ``Pr(x) = ((1 + a) mean_OUT + (1 - a)) / 2``, in ``[0, 1]``; ``None`` tunes it
                on the reference models (:func:`tune_a`). Unused for examples with IN reference models.
            gamma: threshold on the pairwise likelihood ratio ``LR(x, z)``, positive; 1 counts the population
                examples that ``x`` beats.
            temperature: the softmax temperature ``T`` of every probability, ``softmax(logits / T)``, positive;
                ``None`` tunes it with ``a`` on the reference models (:func:`tune_a_and_temperature`).
        """
        super().__init__(a=a, gamma=gamma, temperature=temperature)

    def check(self, signals: Signals) -> None:
        """See :meth:`Attack.check`; also checks ``a``, ``gamma`` and the population reference logits' shape."""
        super().check(signals)

        def number(x: object) -> bool:
            return isinstance(x, int | float | np.floating | np.integer) and not isinstance(x, bool)

        if self.a is not None and not (number(self.a) and 0.0 <= float(self.a) <= 1.0):
            raise PrivauditError(f"attack 'rmia': a must be between 0 and 1 (or none: tuned), got {self.a!r}")
        if not (number(self.gamma) and float(self.gamma) > 0.0):
            raise PrivauditError(f"attack 'rmia': gamma must be a positive number, got {self.gamma!r}")
        if self.temperature is not None and not (number(self.temperature) and float(self.temperature) > 0.0):
            raise PrivauditError(
                f"attack 'rmia': temperature must be a positive number (or none: tuned), got {self.temperature!r}"
            )
        expected = (signals.n_reference_models, *signals.population_logits.shape)
        if signals.population_reference_logits.shape != expected:
            raise PrivauditError(
                f"attack 'rmia': population reference logits have shape "
                f"{signals.population_reference_logits.shape}, expected {expected}"
            )
        population_in = signals.population_reference_in
        if population_in is not None and np.shape(population_in) != expected[:2]:
            raise PrivauditError(
                f"attack 'rmia': population_reference_in has shape {np.shape(population_in)}, expected {expected[:2]}"
            )

    def get_params(self) -> dict:
        """The parameters as given, plus ``a_used`` and ``temperature_used``, those of the last :meth:`score`."""
        params = super().get_params()
        if getattr(self, "a_", None) is not None:
            params["a_used"] = self.a_
        if getattr(self, "temperature_", None) is not None:
            params["temperature_used"] = self.temperature_
        return params

    def resolved(self, signals: Signals) -> tuple[float, float]:
        """``(a, T)`` as given, each tuned on the reference models when ``None`` (:func:`tune_a_and_temperature`)."""
        a_grid = A_GRID if self.a is None else (float(self.a),)
        t_grid = TEMPERATURE_GRID if self.temperature is None else (float(self.temperature),)
        if len(a_grid) == 1 and len(t_grid) == 1:
            return a_grid[0], t_grid[0]
        if signals.population_reference_in is None:
            return (a_grid[0] if len(a_grid) == 1 else DEFAULT_A), (
                t_grid[0] if len(t_grid) == 1 else DEFAULT_TEMPERATURE
            )
        return tune_a_and_temperature(
            signals.population_reference_logits,
            signals.population_labels,
            signals.population_reference_in,
            signals.population_logits,
            a_grid=a_grid,
            temperature_grid=t_grid,
        )

    def resolved_a(self, signals: Signals) -> float:
        """``a`` as given, or tuned on the reference models when it is ``None`` (see :meth:`resolved`)."""
        return self.resolved(signals)[0]

    def marginals(
        self, signals: Signals, a: float = DEFAULT_A, temperature: float = DEFAULT_TEMPERATURE
    ) -> tuple[np.ndarray, np.ndarray]:
        """``Pr(x)`` for the audited examples and ``Pr(z)`` for the population, from the reference models.

        Args:
            signals: signals that pass :meth:`check`.
            a: the offline scaling (see :meth:`resolved`).
            temperature: the softmax temperature of the reference models' probabilities.

        Returns:
            ``(pr_x, pr_z)`` of shapes ``(n,)`` and ``(m,)``; ``pr_z`` is NaN for a z that is IN every reference
            model.
        """
        reference_p = tempered_p(signals.reference_logits, signals.labels, temperature)  # (K, n)
        reference_in = np.asarray(signals.reference_in, dtype=bool)
        mean_in, count_in = masked_mean(reference_p, reference_in)
        mean_out, count_out = masked_mean(reference_p, ~reference_in)
        pr_x = np.where(
            count_out == 0,
            mean_in,
            np.where(count_in > 0, 0.5 * (mean_in + mean_out), _offline_marginal(mean_out, a)),
        )
        population_p = tempered_p(signals.population_reference_logits, signals.population_labels, temperature)
        population_in = signals.population_reference_in
        if population_in is None:  # models not trained by privaudit (--reference-dir): taken as OUT, as documented
            population_in = np.zeros(population_p.shape, dtype=bool)
        mean_z, _ = masked_mean(population_p, ~np.asarray(population_in, dtype=bool))
        pr_z = _offline_marginal(mean_z, a)
        return np.maximum(pr_x, _TINY), np.maximum(pr_z, _TINY)

    def score(self, signals: Signals) -> np.ndarray:
        """Return ``Pr_z[LR(x, z) > gamma]`` over the population, ties broken by ``LR(x)``; higher = member.

        With finitely many z-samples the fraction saturates: many of the strongest members (and some non-members)
        all dominate every z and score exactly 1.0, which hides the low-FPR regime. The count is monotone in
        ``LR(x)``, so breaking its ties by ``LR(x)`` keeps the paper's order and only resolves those ties: the
        score is the fraction plus a tie-breaker smaller than one z-sample's share, ``1 / (m + 1)``.
        """
        self.check(signals)
        self.a_, self.temperature_ = self.resolved(signals)
        pr_x, pr_z = self.marginals(signals, self.a_, self.temperature_)
        p_x = tempered_p(signals.logits, signals.labels, self.temperature_)
        p_z = tempered_p(signals.population_logits, signals.population_labels, self.temperature_)
        usable = ~np.isnan(pr_z)  # a z that every reference model trained on has no OUT estimate
        if not usable.any():
            raise PrivauditError(
                "attack 'rmia': every population example was in every reference model's training set; "
                "pass a larger --population FILE"
            )
        # Zarifzadeh et al. 2024: LR(x, z) = (p(x|theta) / Pr(x)) / (p(z|theta) / Pr(z)); score = Pr_z[LR > gamma]
        ratio_x = p_x / pr_x
        ratio_z = p_z[usable] / pr_z[usable]
        fraction = fraction_dominated(ratio_x, ratio_z, float(self.gamma))
        order = np.argsort(np.argsort(ratio_x, kind="stable"), kind="stable")
        return fraction + order / (len(ratio_x) * (ratio_z.size + 1))

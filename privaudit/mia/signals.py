"""Signals: what one scoring pass of a model over a data set yields, shared by every attack.

Attacks see plain arrays only (as in TensorFlow Privacy's ``privacy_tests``), so scores from any framework can be
audited through ``--scores``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privaudit.stats.logits import log_softmax

# The signals a target's own outputs give, from the richest to the poorest: full logits (a local model, or an
# endpoint's log-probabilities), the scores of the classes an endpoint returned (top-k), and the predicted label.
OUTPUT_SIGNALS = ("logits", "top_k", "labels")


@dataclass(frozen=True)
class Signals:
    """Per-example model outputs for the audited examples.

    Attributes:
        logits: target model logits, shape ``(n, n_classes)``, float64; log-probabilities from an endpoint that
            returns every class's probability; ``None`` when the endpoint returns less (top-k or labels).
        labels: true label ids, shape ``(n,)``, int64.
        reference_logits: logits of ``K`` reference models on the same examples, shape ``(K, n, n_classes)``,
            or ``None`` when no reference models were trained.
        reference_in: whether each audited example was in each reference model's training set, shape
            ``(K, n)``, bool; ``None`` when there are no reference models. Offline attacks use only the
            ``False`` entries.
        population_logits: target logits on population examples (non-members drawn from the same
            distribution), shape ``(m, n_classes)``; RMIA's z-samples. ``None`` when not given.
        population_labels: label ids of the population examples, shape ``(m,)``.
        population_reference_logits: reference models' logits on the population, shape ``(K, m, n_classes)``.
        population_reference_in: whether each population example was in each reference model's training set,
            shape ``(K, m)``, bool; ``None`` when unknown (models not trained by privaudit), taken as all ``False``.
        top_k_log_probs: log-probabilities of the classes a top-k endpoint returned, ``NaN`` for the others, shape
            ``(n, n_classes)``; derived from ``logits`` when those are given.
        predicted: the target's predicted label ids, shape ``(n,)``; derived from ``logits`` when those are given.
        extra_predicted: predicted label ids of the extra texts each attack asked for (:meth:`Attack.queries`),
            by attack name, in the order asked.
        source: what the target outputs came from, for messages, e.g. ``"the endpoint URL returns labels only"``.
    """

    logits: np.ndarray
    labels: np.ndarray
    reference_logits: np.ndarray | None = None
    reference_in: np.ndarray | None = None
    population_logits: np.ndarray | None = None
    population_labels: np.ndarray | None = None
    population_reference_logits: np.ndarray | None = None
    population_reference_in: np.ndarray | None = None
    top_k_log_probs: np.ndarray | None = None
    predicted: np.ndarray | None = None
    extra_predicted: dict[str, np.ndarray] | None = None
    source: str | None = None

    @property
    def n_examples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_reference_models(self) -> int:
        return 0 if self.reference_logits is None else int(self.reference_logits.shape[0])

    def available(self) -> frozenset[str]:
        """Names of the signals present, matched against each attack's ``requires``."""
        names = set()
        if self.logits is not None:
            names |= set(OUTPUT_SIGNALS)
        elif self.top_k_log_probs is not None:
            names |= {"top_k", "labels"}
        elif self.predicted is not None:
            names.add("labels")
        if self.reference_logits is not None:
            names.add("reference_logits")
        if self.population_logits is not None:
            names.add("population_logits")
        if self.population_reference_logits is not None:
            names.add("population_reference_logits")
        return frozenset(names)

    def predicted_labels(self) -> np.ndarray:
        """The target's predicted label ids, shape ``(n,)``: given, or the argmax of the logits."""
        if self.predicted is not None:
            return np.asarray(self.predicted)
        return np.asarray(self.logits).argmax(axis=-1)

    def class_log_probs(self) -> np.ndarray:
        """Log-probabilities of the classes known, ``NaN`` for the others, shape ``(n, n_classes)``."""
        if self.logits is not None:
            return log_softmax(np.asarray(self.logits, dtype=np.float64))
        return np.asarray(self.top_k_log_probs, dtype=np.float64)

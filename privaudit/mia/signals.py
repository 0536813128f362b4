"""Signals: what one scoring pass of a model over a data set yields, shared by every attack.

Attacks see plain arrays only (as in TensorFlow Privacy's ``privacy_tests``), so scores from any framework can be
audited through ``--scores``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Signals:
    """Per-example model outputs for the audited examples.

    Attributes:
        logits: target model logits, shape ``(n, n_classes)``, float64.
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
    """

    logits: np.ndarray
    labels: np.ndarray
    reference_logits: np.ndarray | None = None
    reference_in: np.ndarray | None = None
    population_logits: np.ndarray | None = None
    population_labels: np.ndarray | None = None
    population_reference_logits: np.ndarray | None = None
    population_reference_in: np.ndarray | None = None

    @property
    def n_examples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_reference_models(self) -> int:
        return 0 if self.reference_logits is None else int(self.reference_logits.shape[0])

    def available(self) -> frozenset[str]:
        """Names of the signals present, matched against each attack's ``requires``."""
        names = {"logits"}
        if self.reference_logits is not None:
            names.add("reference_logits")
        if self.population_logits is not None:
            names.add("population_logits")
        if self.population_reference_logits is not None:
            names.add("population_reference_logits")
        return frozenset(names)

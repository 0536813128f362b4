"""The attack plugin base: signals in, membership scores out.

Like IBM ART's ``_estimator_requirements``, every attack declares what it needs (``requires``, ``online``) so a
missing signal fails early with a message that names the attack and the flag that supplies it. Like
scikit-learn, ``__init__`` only stores parameters; checks happen in :meth:`Attack.check`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.mia.signals import Signals
from privaudit.plugins import Parameterised

SIGNAL_NAMES: frozenset[str] = frozenset(
    {"logits", "top_k", "labels", "reference_logits", "population_logits", "population_reference_logits"}
)

# What each signal of the target's own outputs means, for a message about an endpoint that does not return it.
_OUTPUT_MEANING: dict[str, str] = {
    "logits": "full probabilities (logits)",
    "top_k": "class scores (at least the top class's)",
    "labels": "predicted labels",
}

# What the user must pass to supply each signal; the CLI owns the flags, so keep these in step with it.
_HOW_TO_SUPPLY: dict[str, str] = {
    "reference_logits": "needs reference models: pass --reference-models K (K >= 1)",
    "population_logits": "needs population examples (non-members from the training distribution): "
    "pass --population FILE",
    "population_reference_logits": "needs the reference models' logits on the population: "
    "pass --population FILE together with --reference-models K",
}


class Attack(Parameterised, abc.ABC):
    """A membership inference attack: turns :class:`~privaudit.mia.signals.Signals` into scores.

    Subclasses set the class attributes below, take their parameters as keyword-only arguments of ``__init__``
    (passing them on to ``super().__init__``, which stores them; see :class:`~privaudit.plugins.Parameterised`), and
    implement :meth:`score`. Attacks never print.

    Attributes:
        name: name used on the command line, e.g. ``"lira-offline"``.
        description: one line shown by ``privaudit attacks``.
        requires: signals the attack reads, a subset of :data:`SIGNAL_NAMES`.
        online: ``True`` when the attack needs reference models trained *with* the audited examples
            (some ``reference_in`` entries ``True``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[frozenset[str]]
    online: ClassVar[bool] = False

    def queries(self, texts: Sequence[str], *, seed: int) -> list[str]:
        """Extra texts whose predicted labels the attack needs, e.g. perturbed copies of the audited texts.

        The audit scores them in the same single pass as the audited texts, through the same target (local or
        remote, cached alike), and hands the predicted label ids back in ``signals.extra_predicted[self.name]``, in
        this order. The default asks for nothing.

        Args:
            texts: the audited texts, in the order of the signals.
            seed: the audit's seed; the same seed must give the same texts.
        """
        return []

    @abc.abstractmethod
    def score(self, signals: Signals) -> np.ndarray:
        """Membership scores of the audited examples.

        Args:
            signals: the model outputs the attack reads; must satisfy :meth:`check`.

        Returns:
            Float array of shape ``(n,)``; higher means more likely a member.

        Raises:
            PrivauditError: when a required signal is missing or a parameter is out of range.
        """

    def check(self, signals: Signals) -> None:
        """Fail early, with a message naming this attack and the missing signal.

        Args:
            signals: the signals the attack will be run on.

        Raises:
            PrivauditError: when a signal in ``requires`` is absent, when an online attack has no reference
                model trained with the audited examples, or when an offline attack has no reference model
                trained without them.
        """
        check_outputs([self], signals.available(), source=signals.source)
        missing = sorted(self.requires - signals.available())
        if missing:
            raise PrivauditError(f"attack '{self.name}' {_HOW_TO_SUPPLY.get(missing[0], 'needs ' + missing[0])}")
        if self.queries.__func__ is not Attack.queries and self.name not in (signals.extra_predicted or {}):
            raise PrivauditError(
                f"attack '{self.name}' needs the target's predictions on its extra queries, which were not scored"
            )
        if "population_logits" in self.requires and signals.population_labels is None:
            raise PrivauditError(f"attack '{self.name}' needs the population labels: pass --population FILE")
        if "reference_logits" not in self.requires:
            return
        if signals.reference_in is None:
            raise PrivauditError(
                f"attack '{self.name}' needs to know which audited examples each reference model was trained on"
                " (reference_in); retrain them with --reference-models K"
            )
        ref_shape = signals.reference_logits.shape
        own_shape = signals.class_log_probs().shape if "top_k" in signals.available() else None
        if own_shape is not None and ref_shape[1:] != own_shape:
            raise PrivauditError(
                f"attack '{self.name}': reference logits have shape {ref_shape}, expected "
                f"(K, {', '.join(map(str, own_shape))}) to match the target logits"
            )
        ref_in = np.asarray(signals.reference_in, dtype=bool)
        if ref_in.shape != signals.reference_logits.shape[:2]:
            raise PrivauditError(
                f"attack '{self.name}': reference_in has shape {ref_in.shape}, expected "
                f"{signals.reference_logits.shape[:2]} (reference models, examples)"
            )
        if self.online and (not ref_in.any() or ref_in.all()):
            raise PrivauditError(
                f"attack '{self.name}' needs reference models that include the audited examples and models "
                "that exclude them: pass --reference-models K (K >= 2)"
            )
        if not self.online and ref_in.all():
            raise PrivauditError(
                f"attack '{self.name}' needs reference models trained without the audited examples: "
                "pass --reference-models K (K >= 1)"
            )


def check_outputs(attacks: Sequence[Attack], available: frozenset[str], *, source: str | None) -> None:
    """Refuse an attack that needs more of the target's outputs than the target gives (an endpoint's top-k, labels).

    Called once the first answer of an endpoint shows what it returns, before the rest is asked for, and again by
    :meth:`Attack.check`.

    Raises:
        PrivauditError: naming the attack, what it needs, and what the target returns.
    """
    for attack in attacks:
        missing = [name for name in ("logits", "top_k", "labels") if name in attack.requires and name not in available]
        if missing:
            gives = source or "the target gives " + (", ".join(sorted(available & set(_OUTPUT_MEANING))) or "nothing")
            raise PrivauditError(
                f"attack '{attack.name}' needs {_OUTPUT_MEANING[missing[0]]}, but {gives}; "
                "choose attacks the target's outputs support (label-only: gap, label-only-augment)"
            )

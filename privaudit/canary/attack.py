"""The canary-extraction plugin base: a target and the canaries in, one result per canary out.

Like the membership base (:class:`privaudit.mia.attack.Attack`) and IBM ART's ``_estimator_requirements``, every
extraction attack declares what it needs from the target, so a target that cannot give it fails before any work,
with a message naming the attack and what is missing:

- ``"scores"``: black-box access, the label logits of any text through the shared batched scorer
  (``target.logits(texts, batch_size=...)``);
- ``"inputs_embeds"``: white-box access, differentiable logits from token embeddings
  (``target.input_embeddings()`` and ``target.logits_from_embeddings(embeds, mask)``).

A target says what it gives in its ``provides`` attribute (:class:`privaudit.target.Target` gives both; a remote
endpoint would give ``"scores"`` only). Like scikit-learn, ``__init__`` only stores parameters.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from privaudit.canary.canaries import Canary
from privaudit.errors import PrivauditError
from privaudit.plugins import Parameterised

TARGET_ACCESS: frozenset[str] = frozenset({"scores", "inputs_embeds"})

_ACCESS: dict[str, str] = {
    "scores": "black-box scores (the label logits of texts)",
    "inputs_embeds": "white-box access (gradients through inputs_embeds)",
}


@dataclass(frozen=True)
class ExtractionContext:
    """What every extraction attack of one audit shares.

    Attributes:
        seed: the audit's seed: the same seed must give the same results.
        batch_size: texts per forward pass, for attacks that score many candidates.
        progress: ``progress(stage, done, total)``, for long attacks; ``None`` when nobody listens.
        scored: each enumerated secret space's label log-probabilities, by ``(template, alphabets)``: the first
            attack that scores a space fills it and the others read it
            (:func:`privaudit.canary.exposure.enumerated_log_probs`), so exposure and ModIvA score it once.
    """

    seed: int = 0
    batch_size: int = 512
    progress: Callable[[str, int, int | None], None] | None = None
    scored: dict = field(default_factory=dict, repr=False, compare=False)

    def tell(self, stage: str, done: int, total: int | None) -> None:
        """Report progress, if anyone listens (attacks never print)."""
        if self.progress is not None:
            self.progress(stage, done, total)


class ExtractionAttack(Parameterised, abc.ABC):
    """A canary-extraction attack: tries to read each planted secret back out of the target.

    Subclasses set the class attributes below, take their parameters as keyword-only arguments of ``__init__``
    (passing them on to ``super().__init__``), and implement :meth:`extract`. Attacks never print.

    Attributes:
        name: name used on the command line, e.g. ``"modiva"``.
        description: one line shown by ``privaudit attacks``.
        requires: what the attack needs from the target, a subset of :data:`TARGET_ACCESS`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[frozenset[str]]

    @abc.abstractmethod
    def extract(self, target: Any, canaries: Sequence[Canary], context: ExtractionContext) -> Sequence[Any]:
        """Attack every canary.

        Args:
            target: the audited model: its ``label2id`` (label name to logit index), and what its ``provides``
                names of :data:`TARGET_ACCESS`.
            canaries: the canary file's exposure canaries (inserted and controls), in file order. A canary's
                secret may be used only to score the attack, never to find it.
            context: the audit's seed, batch size and progress callback.

        Returns:
            One result per canary, in the same order. A third-party attack's results are reported under
            ``extraction_attacks`` in the JSON report: each must be a dict, a dataclass or have ``to_dict()``,
            and the fields ``guess`` (the secret's slot values) and ``recovered`` (bool), when present, are shown
            in the tables.

        Raises:
            PrivauditError: when the target or a parameter does not suit the attack.
        """

    def check(self, target: Any) -> None:
        """Fail early, naming this attack and what the target does not give.

        Args:
            target: the target the attack will run on.

        Raises:
            PrivauditError: when something in ``requires`` is not in ``target.provides``.
        """
        provides = frozenset(getattr(target, "provides", ()))
        missing = sorted(self.requires - provides)
        if missing:
            gives = ", ".join(sorted(provides)) or "nothing"
            raise PrivauditError(
                f"extraction attack '{self.name}' needs {_ACCESS.get(missing[0], missing[0])}, which the target "
                f"{getattr(target, 'path', '')} does not give (it gives: {gives}); choose attacks that need only that"
            )

"""A black-box extraction attack: coordinate search over the template's slots, one slot at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from privaudit.canary.attack import ExtractionAttack, ExtractionContext
from privaudit.canary.canaries import Canary, fill
from privaudit.errors import PrivauditError
from privaudit.stats.logits import log_softmax


class GreedySlots(ExtractionAttack):
    """Start from each slot's first value; in each sweep, give each slot in turn the value the model likes best.

    Needs only the label logits of texts (``"scores"``), so it runs against any target, white-box or not. It queries
    ``sweeps * sum(|alphabet|)`` texts per canary instead of the whole space.
    """

    name = "greedy-slots"
    description = "Black-box coordinate search: each slot in turn takes the value that most raises p(label)"
    requires = frozenset({"scores"})

    def __init__(self, *, sweeps: int = 2) -> None:
        super().__init__(sweeps=sweeps)

    def extract(self, target, canaries: Sequence[Canary], context: ExtractionContext) -> list[dict]:
        """One ``{"guess", "recovered", "queries"}`` per canary."""
        if isinstance(self.sweeps, bool) or not isinstance(self.sweeps, int) or self.sweeps < 1:
            raise PrivauditError(
                f"extraction attack 'greedy-slots': sweeps must be an integer >= 1, got {self.sweeps!r}"
            )
        results = []
        for i, canary in enumerate(canaries):
            context.tell("greedy-slots", i, len(canaries))
            label = target.label2id[canary.label]
            values = [alphabet[0] for alphabet in canary.alphabets]
            queries = 0
            for _ in range(self.sweeps):
                for slot, alphabet in enumerate(canary.alphabets):
                    texts = [fill(canary.template, [*values[:slot], v, *values[slot + 1 :]]) for v in alphabet]
                    log_p = log_softmax(target.logits(texts, batch_size=context.batch_size))[:, label]
                    values[slot] = alphabet[int(np.argmax(log_p))]
                    queries += len(texts)
            results.append({"guess": values, "recovered": tuple(values) == canary.secret, "queries": queries})
        context.tell("greedy-slots", len(canaries), len(canaries))
        return results

"""Secret Sharer exposure (Carlini et al. 2019): how far ahead of every other candidate the model ranks a secret."""

from __future__ import annotations

from collections.abc import Sequence

from privaudit.canary.attack import ExtractionAttack, ExtractionContext
from privaudit.canary.canaries import Canary
from privaudit.errors import PrivauditError


class ExposureAttack(ExtractionAttack):
    """Rank each secret's loss among every candidate of its template: ``exposure = log2 |R| - log2 rank``.

    Carlini, Liu, Erlingsson, Kos, Song, "The Secret Sharer", USENIX Security 2019. Black-box: it needs the label
    logits of texts only. The measure itself is :func:`privaudit.canary.exposure.canary_exposures`.

    Args:
        sample: rank against this many random candidates and extrapolate (skew-normal fit), for spaces over
            :data:`~privaudit.canary.exposure.MAX_ENUMERATE`; ``None`` enumerates the space.
    """

    name = "exposure"
    description = "Rank of each secret's loss among all candidates of its template (Carlini et al. 2019)"
    requires = frozenset({"scores"})

    def __init__(self, *, sample: int | None = None) -> None:
        super().__init__(sample=sample)

    def check(self, target) -> None:
        """See :meth:`ExtractionAttack.check`; also checks ``sample``."""
        super().check(target)
        if self.sample is not None and (isinstance(self.sample, bool) or not isinstance(self.sample, int)):
            raise PrivauditError(f"extraction attack 'exposure': sample must be an integer, got {self.sample!r}")
        if self.sample is not None and self.sample < 3:
            raise PrivauditError(f"extraction attack 'exposure': sample must be at least 3, got {self.sample}")

    def extract(self, target, canaries: Sequence[Canary], context: ExtractionContext) -> list:
        """One :class:`~privaudit.canary.exposure.CanaryExposure` per canary."""
        # Imported here: scipy.stats is slow to import, and `privaudit attacks` lists this class without running it.
        from privaudit.canary.exposure import canary_exposures

        return canary_exposures(
            target,
            canaries,
            sample=self.sample,
            seed=context.seed,
            batch_size=context.batch_size,
            progress=lambda done, total: context.tell("exposure", done, total),
            scored=context.scored,
        )

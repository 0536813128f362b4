"""ModIvA (Parikh, Dupuy, Gupta, ACL 2022): white-box inversion of each secret from its label."""

from __future__ import annotations

from collections.abc import Sequence

from privaudit.canary.attack import ExtractionAttack, ExtractionContext
from privaudit.canary.canaries import Canary
from privaudit.errors import PrivauditError


class ModivaAttack(ExtractionAttack):
    """Search each canary's secret by gradient descent on Gumbel-softmax slot distributions fed as ``inputs_embeds``.

    Parikh, Dupuy, Gupta, "Canary Extraction in Natural Language Understanding Models", ACL 2022. White-box: it
    needs gradients through the token embeddings, and the label scores of texts to score every secret of a space
    within ``exact_budget`` (default 10^5; 0: never), whose lowest-loss secret is then the guess, the search's own
    guess beside it. The algorithm is :mod:`privaudit.canary.modiva`; the parameters are those of
    :class:`~privaudit.canary.modiva.ModivaConfig`, with the same defaults, and the audit's seed.
    """

    name = "modiva"
    description = "White-box inversion of each secret from its label via inputs_embeds (Parikh et al. 2022)"
    requires = frozenset({"inputs_embeds", "scores"})

    def __init__(
        self,
        *,
        steps: int = 300,
        restarts: int = 16,
        lr: float = 0.1,
        temperature_start: float = 1.0,
        temperature_end: float = 0.05,
        entropy_weight: float = 0.1,
        top_k: int = 10,
        rescore: int = 256,
        exact_budget: int = 100_000,
    ) -> None:
        super().__init__(
            steps=steps,
            restarts=restarts,
            lr=lr,
            temperature_start=temperature_start,
            temperature_end=temperature_end,
            entropy_weight=entropy_weight,
            top_k=top_k,
            rescore=rescore,
            exact_budget=exact_budget,
        )

    def check(self, target) -> None:
        """See :meth:`ExtractionAttack.check`; also checks the parameters, before any canary is attacked."""
        super().check(target)
        self._config(seed=0)

    def _config(self, *, seed: int):
        # Imported here: torch is slow to import, and `privaudit attacks` lists this class without running it.
        from privaudit.canary.modiva import ModivaConfig

        params = self.get_params()
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PrivauditError(f"extraction attack 'modiva': {key} must be a number, got {value!r}")
        budget = params["exact_budget"]
        if isinstance(budget, float) and budget.is_integer():  # 1e5 on the command line reads as a float
            params["exact_budget"] = int(budget)
        try:
            return ModivaConfig(**params, seed=seed)
        except PrivauditError as err:
            raise PrivauditError(f"extraction attack 'modiva': {err}") from None

    def extract(self, target, canaries: Sequence[Canary], context: ExtractionContext) -> list:
        """One :class:`~privaudit.canary.modiva.ModivaResult` per canary."""
        from privaudit.canary.modiva import extract_all

        config = self._config(seed=context.seed)
        done = [0]

        def one_done(_result) -> None:
            done[0] += 1
            context.tell("ModIvA extraction", done[0], len(canaries))

        context.tell("ModIvA extraction", 0, len(canaries))
        results = extract_all(
            target, canaries, config=config, on_canary=one_done, batch_size=context.batch_size, scored=context.scored
        )
        context.tell("ModIvA extraction", len(canaries), len(canaries))
        return results

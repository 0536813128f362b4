"""A classifier behind an HTTP endpoint, with the scoring interface the audits need from a local ``Target``.

An endpoint gives probabilities, not logits. Log-probabilities stand in for logits: ``softmax(log p) = p``, so every
attack that reads logits through a softmax (LOSS, confidence, entropy, LiRA's and RMIA's probabilities) gets exactly
the numbers it would get from the model's own logits, up to the precision the server sends. Classes an endpoint did not
return (a top-k answer) are ``NaN``; a label-only answer gives the predicted label and nothing else.

What the endpoint returns is learned from its first answer (one batch, cached like every other), before the rest is
asked for, so an attack that needs more than the endpoint gives is refused after one request, not after all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit.endpoint.cache import DEFAULT_CACHE, ResponseCache
from privaudit.endpoint.client import EndpointClient, EndpointConfig
from privaudit.endpoint.formats import LABELS, PROBABILITIES, SUM_TOLERANCE, TOP_K, Prediction
from privaudit.endpoint.scrub import Scrubber
from privaudit.errors import PrivauditError


@dataclass(frozen=True)
class Outputs:
    """What the endpoint said about a list of texts, as arrays.

    Attributes:
        returns: ``"probabilities"``, ``"top-k"`` or ``"labels"``: the least any answer held.
        log_probs: shape ``(n, C)``, log-probabilities; ``NaN`` for classes not returned; all ``NaN`` for labels only.
        predicted: predicted label ids, shape ``(n,)``.
        k: classes per answer for top-k (the fewest returned), ``C`` for probabilities, 0 for labels only.
    """

    returns: str
    log_probs: np.ndarray
    predicted: np.ndarray
    k: int

    def describe(self) -> str:
        if self.returns == TOP_K:
            return f"top-{self.k} scores"
        return "full probabilities" if self.returns == PROBABILITIES else "labels only"


class RemoteTarget:
    """A remote classifier: label names, and scores of texts through the endpoint, cached on disk.

    Args:
        config: the endpoint.
        label_names: the class names, in id order (``--endpoint-labels``, else the audited data's labels sorted), or
            ``None`` to learn them from the first answer that names every class (probabilities).
        cache_dir: the response cache's folder, ``None`` for :data:`~privaudit.endpoint.cache.DEFAULT_CACHE`.
    """

    path = None
    recipe = None
    tokenizer = None
    # What extraction attacks may use (privaudit.canary.attack): an endpoint answers with outputs only, never
    # gradients through the input embeddings.
    provides = frozenset({"scores"})

    def __init__(
        self, config: EndpointConfig, *, label_names: Sequence[str] | None, cache_dir: Path | None = None
    ) -> None:
        self.config = config
        self.label2id = {} if label_names is None else {name: i for i, name in enumerate(label_names)}
        self.cache = ResponseCache(
            cache_dir or DEFAULT_CACHE,
            endpoint=config.url,
            fmt=config.fmt,
            scrub=Scrubber(config.headers.values()).prediction,
        )
        self.queries = 0  # texts asked for in this process

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for name, i in self.label2id.items()}

    @property
    def n_labels(self) -> int:
        return len(self.label2id)

    def fingerprint(self) -> None:
        """A remote model has no weights to hash; the report names it by endpoint and format instead."""
        return None

    def describe(self) -> dict:
        return self.config.describe()

    def outputs(
        self,
        texts: Sequence[str],
        *,
        on_returns: Callable[[Outputs], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Outputs:
        """Score every text: cached answers are read, the rest asked for in batches.

        Args:
            texts: the texts, duplicates allowed (asked for once).
            on_returns: called with the first answer's :class:`Outputs` before any further request; raise in it to
                stop (an attack that needs more than the endpoint returns).
            progress: called with the number of texts answered after each batch.

        Raises:
            PrivauditError: more texts to ask for than ``--max-queries`` (before any request), an HTTP failure, an
                answer out of format, or a label the audit does not know.
        """
        texts = list(texts)
        missing = self.check_budget(texts)
        size = self.config.batch_size
        batches = [missing[i : i + size] for i in range(0, len(missing), size)]
        with EndpointClient(self.config) as client:
            try:
                if batches and on_returns is not None and len(missing) == len(set(texts)):
                    self._keep(batches[0], client.predict_batch(batches[0]), progress)
                    batches = batches[1:]
                if on_returns is not None:
                    first = next((t for t in texts if self.cache.get(t) is not None), None)
                    if first is not None:
                        on_returns(self._arrays([first]))
                for i, predictions in client.predict(batches):
                    self._keep(batches[i], predictions, progress)
            finally:
                self.cache.close()
        return self._arrays(texts)

    def check_budget(self, texts: Sequence[str]) -> list[str]:
        """The texts not cached, refused when asking for them would pass ``--max-queries`` (with those asked so far).

        An audit that asks in several calls (canary: secrets, candidates, audit canaries) checks all its texts at once
        first, so the budget is checked before the first query.

        Raises:
            PrivauditError: over the budget; nothing is asked.
        """
        missing = self.cache.missing(list(texts))
        budget = self.config.max_queries
        if budget is not None and len(missing) + self.queries > budget:
            raise PrivauditError(
                f"the audit needs {len(missing) + self.queries} texts from the endpoint "
                f"({len(set(texts)) - len(missing)} more are cached) but --max-queries is {budget}; nothing more was asked"
            )
        return missing

    def _keep(self, batch: list[str], predictions: list[Prediction], progress) -> None:
        self.cache.add(batch, predictions)
        self.queries += len(batch)
        if progress is not None:
            progress(len(batch))

    def _arrays(self, texts: list[str]) -> Outputs:
        if not self.label2id:
            named = next((a for a in map(self.cache.get, texts) if a is not None and a.scores), None)
            if named is None:
                raise PrivauditError(
                    f"the endpoint {self.config.url} does not name its classes; give them with --endpoint-labels"
                )
            self.label2id = {name: i for i, name in enumerate(sorted(named.scores))}
        n, c = len(texts), self.n_labels
        answers = [self.cache.get(text) for text in texts]
        names = {a.label for a in answers}.union(*(a.scores for a in answers))
        unknown = sorted(names - set(self.label2id))
        if unknown:
            name = Scrubber(self.config.headers.values())(unknown[0])  # server text: scrubbed before it is cut
            raise PrivauditError(
                f"the endpoint answered label '{name[:60]}', which is not among the audit's labels "
                f"({', '.join(self.label2id)}); give the endpoint's labels with --endpoint-labels"
            )
        ids = self.label2id
        predicted = np.fromiter((ids[a.label] for a in answers), dtype=np.int64, count=n)
        probs = np.full((n, c), np.nan)
        for i, answer in enumerate(answers):
            if answer.scores:
                probs[i, [ids[name] for name in answer.scores]] = list(answer.scores.values())
        for answer in answers:
            if len(answer.scores) == c and abs(math.fsum(answer.scores.values()) - 1) > SUM_TOLERANCE:
                raise PrivauditError(
                    f"the endpoint {self.config.url} answered every class with probabilities summing to "
                    f"{math.fsum(answer.scores.values()):.6g}, not 1 (within {SUM_TOLERANCE:g}); privaudit audits "
                    "calibrated probabilities only"
                )
        returned = [len(a.scores) for a in answers]
        k = min(returned, default=c)
        returns = LABELS if k == 0 else (TOP_K if k < c else PROBABILITIES)
        with np.errstate(invalid="ignore"):
            log_probs = np.log(np.maximum(probs, np.finfo(np.float64).tiny))  # NaN stays NaN
        return Outputs(returns=returns, log_probs=log_probs, predicted=predicted, k=k)

    def logits(self, texts: Sequence[str], *, batch_size: int | None = None, progress=None) -> np.ndarray:
        """Log-probabilities as logits, shape ``(n, C)``, for audits that need every class (canary exposure).

        Raises:
            PrivauditError: the endpoint returns less than full probabilities.
        """

        def need_all(outputs: Outputs) -> None:
            if outputs.returns != PROBABILITIES:
                raise PrivauditError(
                    f"this audit needs full probabilities; the endpoint {self.config.url} returns {outputs.describe()}"
                )

        outputs = self.outputs(texts, on_returns=need_all, progress=progress)
        need_all(outputs)
        return outputs.log_probs

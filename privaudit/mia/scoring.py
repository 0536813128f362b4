"""The single scoring stage of ``privaudit mia``: one pass of the target over every text the attacks need.

The target is a local model directory (:class:`~privaudit.target.Target`) or a classifier behind an endpoint
(:class:`~privaudit.endpoint.remote.RemoteTarget`); both score a list of texts. The texts are the audited ones, the
population when an attack reads it, and the extra texts attacks ask for (:meth:`Attack.queries`, e.g. the perturbed
copies of ``label-only-augment``), all in one pass, so an endpoint's batching, budget and cache see them together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from privaudit.data import TextDataset
from privaudit.errors import PrivauditError
from privaudit.mia.attack import Attack, check_outputs

# What each kind of endpoint answer supplies, in the attacks' ``requires`` vocabulary.
_AVAILABLE = {
    "probabilities": frozenset({"logits", "top_k", "labels"}),
    "top-k": frozenset({"top_k", "labels"}),
    "labels": frozenset({"labels"}),
}

MIN_PER_SIDE = 10  # examples each side of an audit needs at least


@dataclass(frozen=True)
class Scored:
    """The target's outputs on a list of texts: full logits, or what an endpoint gives instead.

    Attributes:
        logits: ``(n, C)`` logits (log-probabilities from an endpoint), or ``None`` when the endpoint gives less.
        top_k_log_probs: ``(n, C)`` log-probabilities with ``NaN`` for classes not returned (top-k endpoints).
        predicted: ``(n,)`` predicted label ids.
        source: what the outputs came from, for messages, e.g. ``the endpoint URL returns labels only``.
    """

    logits: np.ndarray | None
    top_k_log_probs: np.ndarray | None
    predicted: np.ndarray
    source: str | None

    def rows(self, start: int, stop: int) -> Scored:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return Scored(cut(self.logits), cut(self.top_k_log_probs), self.predicted[start:stop], self.source)


def load_target(request, members: TextDataset, non_members: TextDataset, *, compute=None):
    """The audited target: the model directory, or the endpoint with the audit's label names.

    With an endpoint, class ids follow ``--endpoint-labels`` when given, else the audited data's labels sorted (as
    ``privaudit train`` numbers them).
    """
    if request.endpoint is None:
        from privaudit.target import Target

        if request.model_dir is None:
            raise PrivauditError("give MODEL_DIR with --members and --non-members, --endpoint URL, or --scores FILE")
        return Target.load(request.model_dir, allow_pickle=request.allow_pickle, compute=compute)
    if request.model_dir is not None:
        raise PrivauditError("give MODEL_DIR or --endpoint URL, not both")
    from privaudit.endpoint.remote import RemoteTarget

    names = request.endpoint.label_names or sorted(set(members.label_names()) | set(non_members.label_names()))
    return RemoteTarget(request.endpoint, label_names=names, cache_dir=request.endpoint_cache)


def extra_queries(attacks: Sequence[Attack], texts: Sequence[str], *, seed: int) -> dict[str, list[str]]:
    """The extra texts each attack asks for, by attack name (attacks that ask for none are left out)."""
    extra = {attack.name: attack.queries(texts, seed=seed) for attack in attacks}
    return {name: queries for name, queries in extra.items() if queries}


def score_texts(
    target,
    texts: Sequence[str],
    *,
    attacks: Sequence[Attack],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> Scored:
    """Score every text once through the target.

    An endpoint's first answer shows what it returns; an attack that needs more is refused then, before the rest of
    the texts are asked for.

    Raises:
        PrivauditError: an attack the target's outputs cannot support, or the endpoint's own failures.
    """
    if getattr(target, "config", None) is None:  # a local model: full logits
        logits = target.logits(texts, batch_size=batch_size, progress=progress)
        return Scored(logits=logits, top_k_log_probs=None, predicted=logits.argmax(axis=-1), source=None)
    url = target.config.url

    def check(outputs) -> None:
        check_outputs(attacks, _AVAILABLE[outputs.returns], source=f"the endpoint {url} returns {outputs.describe()}")

    outputs = target.outputs(texts, on_returns=check, progress=progress)
    check(outputs)  # the least any answer held
    source = f"the endpoint {url} returns {outputs.describe()}"
    if outputs.returns == "probabilities":
        return Scored(outputs.log_probs, None, outputs.predicted, source)
    if outputs.returns == "top-k":
        return Scored(None, outputs.log_probs, outputs.predicted, source)
    return Scored(None, None, outputs.predicted, source)


def describe_target(target, request) -> dict:
    """The report's ``model`` section: the directory and its fingerprint, or the endpoint (never its headers)."""
    if request.endpoint is not None:
        return {"path": None, "fingerprint": None, **request.endpoint.describe()}
    return {"path": str(request.model_dir), "fingerprint": target.fingerprint()}


def check_sides(members: TextDataset, non_members: TextDataset) -> None:
    """Enough examples a side, and no text on both.

    Raises:
        PrivauditError: naming the file and the fix.
    """
    for side in (members, non_members):
        if len(side) < MIN_PER_SIDE:
            raise PrivauditError(
                f"{side.path}: only {len(side)} examples; an audit needs at least {MIN_PER_SIDE} a side"
            )
    overlap = set(members.texts) & set(non_members.texts)
    if overlap:
        example = next(iter(sorted(overlap)))
        raise PrivauditError(
            f"{members.path} and {non_members.path} share {len(overlap)} texts (e.g. '{example}'); "
            "members and non-members must be disjoint"
        )

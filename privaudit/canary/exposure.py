"""Secret Sharer exposure (Carlini et al. 2019), with the conventions of TensorFlow Privacy's ``secret_sharer``.

A canary's exposure says how far ahead of random candidates from the same secret space the model ranks it:
``exposure = log2 |R| - log2 rank``, where candidates are ranked by loss (or perplexity), lowest first. Inputs
are losses: lower means the model finds the sequence more likely.

Conventions, pinned to ``tensorflow_privacy/privacy/privacy_tests/secret_sharer/exposures.py`` and its tests:

* ``|R|`` is the number of reference (never-inserted) candidates, not counting the secret. A secret ranked
  first has exposure ``log2 |R|``; one ranked last, ``log2 |R| - log2(|R| + 1)``, slightly below 0.
* ``rank = 1 + number of references with loss <= the secret's``: a tie counts against the secret (TF Privacy
  sorts a reference ahead of a secret with the same loss), so exposure is never overstated by ties.

:func:`canary_exposures` measures the canaries of a canary file under a target: every candidate of a template is
scored in one pass through the shared batched scorer (enumerated up to :data:`MAX_ENUMERATE` candidates, else sampled
and extrapolated), and each secret ranked among them. It needs black-box scores only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from privaudit.canary.canaries import Canary, fill
from privaudit.errors import PrivauditError
from privaudit.stats.logits import log_softmax, losses


def exposures(secret_losses: np.ndarray, candidate_losses: np.ndarray) -> np.ndarray:
    """Exposure by rank of many secrets against one shared set of reference candidates.

    Args:
        secret_losses: losses of the secrets, any shape.
        candidate_losses: losses of the reference candidates, shape ``(n,)``, ``n >= 1``; the secrets are not
            among them.

    Returns:
        One exposure per secret, same shape as ``secret_losses``.

    Raises:
        PrivauditError: on empty, non-1-D or non-finite inputs.
    """
    rank = exposure_ranks(secret_losses, candidate_losses)  # checks both inputs
    # Carlini et al. 2019, definition of exposure: log2 |R| - log2 rank
    return math.log2(np.size(candidate_losses)) - np.log2(rank)


def exposure_ranks(secret_losses: np.ndarray, candidate_losses: np.ndarray) -> np.ndarray:
    """The rank of each secret among the reference candidates, by loss: ``1 + |{r : loss_r <= loss_secret}|``.

    Rank 1 is ahead of every reference; ``|R| + 1`` behind them all. :func:`exposures` is ``log2 |R| - log2 rank``.

    Raises:
        PrivauditError: on empty, non-1-D or non-finite inputs.
    """
    secrets = _finite(secret_losses, "secret losses")
    reference = _finite(candidate_losses, "reference losses")
    if reference.ndim != 1 or reference.size == 0:
        raise PrivauditError(f"reference losses must be a non-empty 1-D array, got shape {reference.shape}")
    # side="right" counts references with loss <= the secret's: ties rank the reference first, as TF Privacy.
    return 1 + np.searchsorted(np.sort(reference), secrets, side="right")


def exposure_by_rank(secret_loss: float, reference_losses: np.ndarray) -> float:
    """Exposure of one secret by its rank among reference candidates.

    Args:
        secret_loss: the secret's loss.
        reference_losses: losses of never-inserted candidates from the same space, shape ``(n,)``, ``n >= 1``.

    Returns:
        ``log2(n) - log2(1 + #{reference <= secret})``, between ``log2(n) - log2(n + 1)`` and ``log2(n)``.

    Raises:
        PrivauditError: on empty, non-1-D or non-finite inputs.
    """
    return float(exposures(np.asarray([secret_loss], dtype=np.float64), reference_losses)[0])


def exposure_by_extrapolation(secret_loss: float, sampled_losses: np.ndarray, *, space_size: float) -> float:
    """Exposure estimated from a skew-normal fit to sampled candidate losses, for spaces too big to enumerate.

    As TF Privacy's ``compute_exposure_extrapolation``: fit ``scipy.stats.skewnorm`` to the sampled losses and
    take ``exposure = -log2 CDF(secret_loss)`` (Carlini et al. 2019, exposure by extrapolation: ``-log2`` of the
    fraction of the space ranked ahead of the secret). The CDF is taken in log space, so a secret far in the
    tail does not underflow to an infinite exposure, and the result is capped at ``log2(space_size)``, the
    exposure of a secret ranked first in the whole space.

    Args:
        secret_loss: the secret's loss.
        sampled_losses: losses of candidates sampled at random from the space, shape ``(n,)``, ``n >= 3``.
        space_size: number of possible secrets, ``> 1``.

    Returns:
        The estimated exposure, in ``[0, log2(space_size)]``.

    Raises:
        PrivauditError: on invalid inputs, or samples without spread to fit.
    """
    sampled = _finite(sampled_losses, "sampled losses")
    secret = float(_finite(secret_loss, "secret loss"))
    if sampled.ndim != 1 or sampled.size < 3:
        raise PrivauditError(f"need at least 3 sampled losses in a 1-D array to fit, got shape {sampled.shape}")
    if not np.ptp(sampled) > 0:
        raise PrivauditError("sampled losses are all equal; a distribution cannot be fitted to them")
    if not space_size > 1 or not math.isfinite(space_size):
        raise PrivauditError(f"space_size must be a finite number > 1, got {space_size}")
    shape, loc, scale = stats.skewnorm.fit(sampled)
    log_cdf = float(stats.skewnorm.logcdf(secret, shape, loc, scale))
    return min(-log_cdf / math.log(2), math.log2(space_size))


def _finite(values: np.ndarray | float, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PrivauditError(f"{what} must be numeric: {err}") from None
    if not np.all(np.isfinite(array)):
        raise PrivauditError(f"{what} contain NaN or infinite values")
    return array


# --- exposure of canaries under a target ----------------------------------------------------------------------------

MAX_ENUMERATE = 1_000_000
"""Candidates of a template ranked one by one; above this, ``sample`` candidates are drawn and extrapolated from."""


@dataclass(frozen=True)
class CanaryExposure:
    """The exposure of one canary, and the candidate losses it was measured against.

    Attributes:
        exposure: in bits.
        loss: the canary's loss, from the same scoring pass as the candidates when they were enumerated.
        method: ``"rank"`` (among every candidate) or ``"extrapolation"`` (from a sample).
        candidate_losses: every (or every sampled) candidate's loss under the canary's label, shared by the canaries
            of one template and label.
        rank: the secret's rank by loss among the ``rank_of`` candidates of its space (1 = the lowest loss;
            :func:`exposure_ranks`): exact when enumerated, estimated (``rank_of * 2^-exposure``) when extrapolated.
        rank_of: the number of candidates in the secret's space, itself included.
    """

    exposure: float
    loss: float
    method: str
    candidate_losses: np.ndarray = field(repr=False)
    rank: float | None = None
    rank_of: int | None = None

    def to_dict(self) -> dict:
        return {"exposure": self.exposure, "loss": self.loss, "method": self.method}


def candidates_count(canary: Canary) -> int:
    """The number of secrets of the canary's template."""
    return int(np.prod([len(a) for a in canary.alphabets], dtype=np.float64))


def candidates(canary: Canary) -> tuple[list[str], int]:
    """Every secret of the canary's template, as texts, in a fixed order, and the space size."""
    space = candidates_count(canary)
    return [fill(canary.template, values) for values in itertools.product(*canary.alphabets)], space


def candidate_log_probs(target, canary: Canary, *, sample: int | None, rng, batch_size: int):
    """Log-probabilities of every label for every candidate of the template (or a sample of them)."""
    space = candidates_count(canary)
    if space <= MAX_ENUMERATE and sample is None:
        texts, _ = candidates(canary)
        method = "rank"
    else:
        if sample is None:
            raise PrivauditError(
                f"canary template '{canary.template}' has {space:.3g} candidates, too many to enumerate "
                f"(limit {MAX_ENUMERATE:.0e}); pass --sample N to extrapolate from N random candidates"
            )
        sizes = [len(a) for a in canary.alphabets]
        draws = rng.integers(0, sizes, size=(sample, len(sizes)))
        texts = [fill(canary.template, [a[i] for a, i in zip(canary.alphabets, row)]) for row in draws]
        method = "extrapolation"
    return log_softmax(target.logits(texts, batch_size=batch_size)), method, space


def enumerated_log_probs(target, canary: Canary, *, batch_size: int, scored: dict | None = None) -> np.ndarray:
    """Log-probabilities of every label for every candidate of the canary's space, in :func:`candidates` order.

    Scored once per audit: ``scored`` (the audit's :attr:`~privaudit.canary.attack.ExtractionContext.scored`) keeps
    each enumerated space, so exposure and ModIvA's exhaustive guess read the same numbers from one pass.

    Raises:
        PrivauditError: the space has more than :data:`MAX_ENUMERATE` candidates.
    """
    key = (canary.template, canary.alphabets)
    if scored is not None and key in scored:
        return scored[key]
    logp, _, _ = candidate_log_probs(target, canary, sample=None, rng=None, batch_size=batch_size)
    if scored is not None:
        scored[key] = logp
    return logp


def canary_exposures(
    target,
    canaries: Sequence[Canary],
    *,
    sample: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
    scored: dict | None = None,
) -> list[CanaryExposure]:
    """Exposure of every canary under the target (Carlini et al. 2019), one scoring pass per template.

    Args:
        target: gives ``label2id`` and black-box ``logits(texts, batch_size=...)``.
        canaries: the canaries, all labels of the target.
        sample: rank against this many random candidates and extrapolate, instead of enumerating the space.
        seed: seeds the sampled candidates.
        batch_size: candidates per forward pass.
        progress: called with (templates done, templates).
        scored: the audit's enumerated spaces, shared with the other attacks (:func:`enumerated_log_probs`).

    Returns:
        One exposure per canary, in input order.

    Raises:
        PrivauditError: a template's space is too large to enumerate and ``sample`` is not given.
    """
    rng = np.random.default_rng(seed)
    labels = np.array([target.label2id[c.label] for c in canaries])
    # Extrapolation (only with a sample) needs each canary's own loss: computed as the audit's own-loss pass is.
    own = losses(target.logits([c.text for c in canaries]), labels) if sample is not None and canaries else []
    groups: dict[tuple, list[int]] = {}
    for i, canary in enumerate(canaries):
        groups.setdefault((canary.template, canary.alphabets), []).append(i)
    found: list[CanaryExposure | None] = [None] * len(canaries)
    for g, members in enumerate(groups.values()):
        if progress is not None:
            progress(g, len(groups))
        first = canaries[members[0]]
        if sample is None:
            logp, method = enumerated_log_probs(target, first, batch_size=batch_size, scored=scored), "rank"
            space = candidates_count(first)
        else:
            logp, method, space = candidate_log_probs(target, first, sample=sample, rng=rng, batch_size=batch_size)
        for i in members:
            cand = -logp[:, labels[i]]
            if method == "rank":
                # The enumerated space holds the secret itself; rank it among the others (Carlini et al. 2019,
                # sec. 4), reading its loss from the same pass so that batch composition cannot shift it.
                j = candidate_index(canaries[i])
                rank = int(exposure_ranks(cand[[j]], np.delete(cand, j))[0])
                exposure = float(exposures(cand[[j]], np.delete(cand, j))[0])
                found[i] = CanaryExposure(exposure, float(cand[j]), method, cand, rank=rank, rank_of=int(space))
            else:
                loss = float(own[i])
                exposure = exposure_by_extrapolation(loss, cand, space_size=space)
                estimate = max(1.0, space * 2.0**-exposure)
                found[i] = CanaryExposure(exposure, loss, method, cand, rank=estimate, rank_of=int(space))
    if progress is not None:
        progress(len(groups), len(groups))
    return found


def candidate_index(canary: Canary) -> int:
    """Position of the canary's secret in :func:`candidates` order (mixed radix over the slot alphabets)."""
    index = 0
    for value, alphabet in zip(canary.secret, canary.alphabets):
        index = index * len(alphabet) + alphabet.index(value)
    return index

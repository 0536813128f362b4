"""Secret Sharer exposure (Carlini et al. 2019), with the conventions of TensorFlow Privacy's ``secret_sharer``.

A canary's exposure says how far ahead of random candidates from the same secret space the model ranks it:
``exposure = log2 |R| - log2 rank``, where candidates are ranked by loss (or perplexity), lowest first. Inputs
are losses: lower means the model finds the sequence more likely.

Conventions, pinned to ``tensorflow_privacy/privacy/privacy_tests/secret_sharer/exposures.py`` and its tests:

* ``|R|`` is the number of reference (never-inserted) candidates, not counting the secret. A secret ranked
  first has exposure ``log2 |R|``; one ranked last, ``log2 |R| - log2(|R| + 1)``, slightly below 0.
* ``rank = 1 + number of references with loss <= the secret's``: a tie counts against the secret (TF Privacy
  sorts a reference ahead of a secret with the same loss), so exposure is never overstated by ties.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from privaudit.errors import PrivauditError


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

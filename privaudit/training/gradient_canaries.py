"""White-box Dirac gradient canaries in DP-SGD (Nasr et al. 2023, "Tight auditing of differentially private machine
learning"), audited in one run (Steinke, Nasr, Jagielski 2023).

Each of ``m`` canaries owns one coordinate ``j`` of the input embedding, in a row that no training text tokenizes to,
so that the data's clipped gradient sum there is exactly zero at every step (checked at every step). Each canary is
inserted with probability 1/2 (the auditor's secret coin flips); at every step each inserted canary is sampled
independently with the data's Poisson rate ``q`` and, when sampled, adds ``C e_j`` (``C`` the clipping norm) to the
clipped sum before the noise: a gradient of norm ``C``, which is exactly what one example may contribute. At every
step, before the optimiser's update, the trainer records the noisy sum at every canary coordinate: the "all iterates,
white-box" threat model, which the accountant's epsilon covers. AdamW's update is not linear in the gradient, so the
final weights alone would not reveal it.

In units of ``C``, a coordinate's record at step ``t`` is ``x_t = b_t + sigma z_t`` with ``z_t ~ N(0, 1)`` and
``b_t ~ Bernoulli(q)`` for an inserted canary, ``b_t = 0`` for one left out: the Poisson-subsampled Gaussian
mechanism that the accountant composes over the steps.

Insertion and observation at training time are in ``privaudit.training.canary_insertion``; this module holds the file
format and the scores, which ``privaudit dp-audit`` reads.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.textfile import json_lines

# The canary file's ``kind`` for gradient canaries (input-space ones are "exposure" and "audit").
KIND = "gradient"


def record_path(canaries_file: Path) -> Path:
    """Where the per-step record goes: beside the canary file, ``model.canaries.jsonl`` -> ``model.canaries.gradient.npz``."""
    canaries_file = Path(canaries_file)
    stem = canaries_file.name[: -len(canaries_file.suffix)] if canaries_file.suffix else canaries_file.name
    return canaries_file.with_name(f"{stem}.{KIND}.npz")


@dataclass(frozen=True)
class GradientCanaryRecord:
    """A gradient canary run as read back: the record (steps, m), the coin flips, and the parameters."""

    observations: np.ndarray
    inserted: np.ndarray
    times_sampled: np.ndarray
    noise_multiplier: float
    sample_rate: float
    max_grad_norm: float


def read_gradient_canaries(canaries_file: Path) -> GradientCanaryRecord:
    """Read the gradient canaries of a canary file and the record it names (``allow_pickle=False``).

    Raises:
        PrivauditError: no such file, no gradient canaries in it, a missing or inconsistent record.
    """
    canaries_file = Path(canaries_file)
    if not canaries_file.is_file():
        raise PrivauditError(
            f"{canaries_file}: no such canary file; 'privaudit train --gradient-canaries M' writes one"
        )
    lines = []
    for _, obj in json_lines(canaries_file, what="canary file"):
        if isinstance(obj, dict) and obj.get("kind") == KIND:
            lines.append(obj)
    if not lines:
        raise PrivauditError(
            f"{canaries_file}: no gradient canaries; train with 'privaudit train --gradient-canaries M'"
        )
    try:
        lines.sort(key=lambda obj: int(obj["index"]))
        if any(obj["inserted"] not in (0, 1) or isinstance(obj["inserted"], float) for obj in lines):
            raise ValueError("'inserted' must be true/false")
        inserted = np.array([bool(obj["inserted"]) for obj in lines])
        times_sampled = np.array([int(obj.get("times_sampled", 0)) for obj in lines])
        names = {obj["record"] for obj in lines}
    except (KeyError, TypeError, ValueError) as err:
        raise PrivauditError(
            f"{canaries_file}: gradient canary lines need 'index', 'inserted', 'record' ({err})"
        ) from err
    if [int(obj["index"]) for obj in lines] != list(range(len(lines))) or len(names) != 1:
        raise PrivauditError(f"{canaries_file}: gradient canaries must be numbered 0..m-1 and share one record")
    path = canaries_file.parent / Path(names.pop()).name  # beside the canary file, whatever the line says
    try:
        if path.is_file() and not zipfile.is_zipfile(path):  # np.load would take it for a pickle and say so
            raise zipfile.BadZipFile("not a zip archive")
        with np.load(path, allow_pickle=False) as npz:
            observations = np.asarray(npz["observations"], dtype=np.float64)
            params = {key: float(npz[key]) for key in ("noise_multiplier", "sample_rate", "max_grad_norm")}
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:  # truncated, zeroed or overwritten: not an .npz any more
        raise PrivauditError(
            f"{path}: the gradient canary record is damaged or truncated ({type(err).__name__}); it cannot be "
            "rebuilt without retraining: rerun 'privaudit train --gradient-canaries'"
        ) from err
    except (OSError, KeyError, ValueError) as err:
        raise PrivauditError(f"{path}: cannot read the gradient canary record ({err})") from err
    if observations.ndim != 2 or observations.shape[1] != len(lines):
        raise PrivauditError(f"{path}: the record has shape {observations.shape}, not (steps, {len(lines)})")
    return GradientCanaryRecord(observations=observations, inserted=inserted, times_sampled=times_sampled, **params)


def likelihood_ratio_scores(observations: np.ndarray, *, sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """Each canary's log likelihood ratio of "in" against "out" over all steps.

    Per step, ``x ~ (1 - q) N(0, sigma^2) + q N(1, sigma^2)`` if in and ``N(0, sigma^2)`` if out, so the ratio is
    ``1 - q + q exp((x - 1/2) / sigma^2)``; the steps are independent given the coin, so the logs add up
    (Nasr et al. 2023, the Dirac canary's test; Neyman-Pearson-optimal for each canary).
    """
    q, var = sample_rate, noise_multiplier**2
    if not 0 < q <= 1 or var <= 0:
        raise PrivauditError(
            f"gradient canary scores need 0 < q <= 1 and sigma > 0, got q={q}, sigma={noise_multiplier}"
        )
    log_in = math.log(q) + (observations - 0.5) / var
    per_step = log_in if q == 1 else np.logaddexp(math.log1p(-q), log_in)  # log(1 - q + q e^...), stably
    return per_step.sum(axis=0)


def sum_scores(observations: np.ndarray) -> np.ndarray:
    """Each canary's plain sum of its records: the sufficient statistic when every step samples it (q = 1)."""
    return observations.sum(axis=0)


def gradient_canary_scores(canaries_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """The gradient canaries' scores (log likelihood ratios, higher means "in") and their coin flips (0/1).

    Args:
        canaries_file: the file ``privaudit train --gradient-canaries M --canaries-out FILE`` wrote.

    Returns:
        ``(scores, inserted)``, each of shape ``(m,)``: float64 scores, int64 inclusion bits.

    Raises:
        PrivauditError: as :func:`read_gradient_canaries`.
    """
    record = read_gradient_canaries(canaries_file)
    scores = likelihood_ratio_scores(
        record.observations, sample_rate=record.sample_rate, noise_multiplier=record.noise_multiplier
    )
    return scores, record.inserted.astype(np.int64)

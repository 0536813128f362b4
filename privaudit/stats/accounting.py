"""Theoretical epsilon of DP-SGD, through Opacus's accountants (RDP, PRV, GDP)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from privaudit.errors import PrivauditError

ACCOUNTANTS = ("rdp", "prv", "gdp")


def _check(*, noise_multiplier: float | None, sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise PrivauditError(f"--accountant '{accountant}' is unknown; use one of {', '.join(ACCOUNTANTS)}")
    if noise_multiplier is not None and noise_multiplier <= 0:
        raise PrivauditError("--noise-multiplier must be above 0 (0 gives no privacy at all)")
    if not 0 < sample_rate <= 1:
        raise PrivauditError("--sample-rate must be in (0, 1]: batch size over data set size")
    if steps < 1:
        raise PrivauditError("--steps must be at least 1")
    if not 0 < delta < 1:
        raise PrivauditError("--delta must be in (0, 1)")


def epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at the given delta.

    Args:
        noise_multiplier: noise standard deviation over the clipping norm.
        sample_rate: probability that each example is in a batch.
        steps: optimiser steps.
        delta: the target delta.
        accountant: ``rdp`` (Mironov 2017), ``prv`` (Gopi et al. 2021) or ``gdp`` (Dong et al. 2019).
    """
    _check(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        accountant=accountant,
    )
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


def noise_multiplier_for_epsilon(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp"
) -> float:
    """The smallest noise multiplier whose epsilon after ``steps`` is at most ``target_epsilon``.

    Raises:
        PrivauditError: bad parameters, or a target so small that no noise multiplier reaches it.
    """
    if target_epsilon <= 0:
        raise PrivauditError("--target-epsilon must be above 0; try 8")
    _check(noise_multiplier=None, sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            noise = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=0.005,
            )
        except ValueError as err:  # Opacus gives up past a noise multiplier of 1e6: "The privacy budget is too low."
            raise PrivauditError(
                f"--target-epsilon {target_epsilon:g} is out of reach at delta {delta:g} over {steps} steps "
                f"(sample rate {sample_rate:.3g}); raise it or train for fewer epochs"
            ) from err
    return float(noise)


def epsilon_from_model(model_dir: Path, *, accountant: str | None = None) -> tuple[float, float] | None:
    """(epsilon, delta) from a model directory's ``privaudit.json``; ``None`` when it was trained without DP.

    Recomputed from the recorded noise, sample rate and steps, with the recorded accountant unless another is named.
    """
    recipe_file = Path(model_dir) / "privaudit.json"
    if not recipe_file.is_file():
        raise PrivauditError(
            f"{model_dir}: no privaudit.json; give --noise-multiplier, --sample-rate, --steps, --delta"
        )
    try:
        dp = json.loads(recipe_file.read_text(encoding="utf-8")).get("dp")
    except json.JSONDecodeError as err:
        raise PrivauditError(f"{recipe_file}: malformed JSON ({err.msg})") from err
    if not dp:
        return None
    try:
        eps = epsilon(
            noise_multiplier=dp["noise_multiplier"],
            sample_rate=dp["sample_rate"],
            steps=dp["steps"],
            delta=dp["delta"],
            accountant=accountant or dp.get("accountant", "rdp"),
        )
    except KeyError as err:
        raise PrivauditError(f"{recipe_file}: the 'dp' section lacks {err}") from err
    return eps, float(dp["delta"])


def theoretical_epsilon(
    model_dir: Path | None = None,
    *,
    noise_multiplier: float | None = None,
    sample_rate: float | None = None,
    steps: int | None = None,
    delta: float | None = None,
    accountant: str = "rdp",
) -> tuple[float, float]:
    """``(epsilon, delta)`` of ``privaudit epsilon``: from a model directory's ``privaudit.json``, or from parameters.

    Args:
        model_dir: a model trained with DP-SGD; when given, the parameters below are not read.
        noise_multiplier: noise standard deviation over the clipping norm.
        sample_rate: Poisson sampling rate (batch size over data set size).
        steps: optimiser steps.
        delta: the target delta.
        accountant: ``rdp``, ``prv`` or ``gdp``.

    Raises:
        PrivauditError: a model trained without DP (its epsilon is infinite), a missing parameter, bad parameters.
    """
    if model_dir is not None:
        found = epsilon_from_model(Path(model_dir), accountant=accountant)
        if found is None:
            raise PrivauditError(f"{model_dir}: trained without DP, so its epsilon is infinite")
        return found
    given = (
        ("--noise-multiplier", noise_multiplier),
        ("--sample-rate", sample_rate),
        ("--steps", steps),
        ("--delta", delta),
    )
    missing = [flag for flag, value in given if value is None]
    if missing:
        raise PrivauditError(f"give a model directory, or all of {', '.join(missing)}")
    value = epsilon(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        accountant=accountant,
    )
    return value, delta

"""What a threshold, a claimed epsilon and a measured value may be: the one place that checks them.

Every such number passes here, whether it came from a flag (``--fail-above``, ``--max-increase``, ``--epsilon``), a
config file (``[tool.privaudit.mia] fail_above``) or a file (a ``--baseline``), so a gate that can never fail (``auc=2``)
or always fails (``tpr@1%fpr=-0.5``), a claim that makes every bound check pass (``--epsilon nan``) or a baseline of NaN
is refused with one line naming where it came from. The ranges:

- AUC: a ``--fail-above`` limit in [0.5, 1] (below 0.5 an attack is worse than guessing, so a limit there fails audits
  of a model that leaks nothing); a measured AUC (a baseline's) in [0, 1];
- TPR at an FPR, advantage: in [0, 1];
- epsilon lower bounds, mu, exposure, secrets extracted, and a claimed epsilon: >= 0 and finite;
- a ``--max-increase``: >= 0 and finite, at most 1 for the metrics bounded by 1;
- NaN nowhere.

Ground floor: imports only :mod:`privaudit.errors`.
"""

from __future__ import annotations

import math

from privaudit.errors import PrivauditError

AUC_LIMIT_LOW = 0.5
_UNIT = (0.0, 1.0)
_NON_NEGATIVE = (0.0, math.inf)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a measurement of ``metric`` can take: [0, 1] for AUC, TPR and advantage; [0, inf) for the rest."""
    if metric in ("auc", "advantage") or (metric.startswith("tpr@") and metric.endswith("%fpr")):
        return _UNIT
    return _NON_NEGATIVE


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PrivauditError(f"{where}: {value!r} is not a number")
    value = float(value)
    if math.isnan(value):
        raise PrivauditError(f"{where}: needs a finite number, got NaN")
    return value


def _describe(low: float, high: float) -> str:
    return f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g} and finite"


def check_measured(metric: str, value: object, *, where: str) -> float:
    """A measured value (a baseline's): a number in the metric's range (:func:`metric_range`).

    Raises:
        PrivauditError: NaN, infinite, not a number, or outside the range; the message names ``where``.
    """
    number = _number(value, where)
    low, high = metric_range(metric)
    if not (low <= number <= high) or math.isinf(number):
        raise PrivauditError(f"{where}: {metric} = {number:g} cannot be measured; {metric} is {_describe(low, high)}")
    return number


def check_limit(kind: str, metric: str, limit: object, *, where: str) -> float:
    """A threshold's limit: ``fail_above`` in the metric's range (AUC from 0.5), ``max_increase`` from 0.

    Args:
        kind: ``"fail_above"`` or ``"max_increase"``.
        metric: the metric limited.
        limit: the value given.
        where: the flag or config key and spec, for the message (``"--fail-above 'auc=2'"``).

    Raises:
        PrivauditError: NaN, infinite, not a number, or a limit that makes the gate always pass or always fail.
    """
    number = _number(limit, where)
    if math.isinf(number):
        raise PrivauditError(f"{where}: needs a finite number, got {number}")
    low, high = metric_range(metric)
    if kind == "max_increase":
        if not 0 <= number <= high - low:
            raise PrivauditError(
                f"{where}: the allowed increase of {metric} must be {_describe(0.0, high - low)}, got {number:g}"
            )
        return number
    if metric == "auc":
        low = AUC_LIMIT_LOW
    if not low <= number <= high:
        always = "never fail" if number > high else "always fail"
        why = " (below 0.5 an attack is worse than guessing)" if metric == "auc" and 0 <= number < low else ""
        raise PrivauditError(
            f"{where}: {metric} limit {number:g} is outside {_describe(low, high)}{why}: the gate would {always}"
        )
    return number


def check_epsilon(value: float | None, *, where: str = "--epsilon") -> float | None:
    """A claimed (theoretical) epsilon: ``None``, or a finite number >= 0.

    Raises:
        PrivauditError: NaN, infinite or negative; a bound check against it would pass or fail whatever was measured.
    """
    if value is None:
        return None
    number = _number(value, where)
    if not 0 <= number < math.inf:
        raise PrivauditError(f"{where}: epsilon must be >= 0 and finite, got {number:g}")
    return number

"""What a membership-inference report says first: the gate's verdict and the audit's headline numbers.

The terminal table (:mod:`privaudit.report.table`) and the HTML page (:mod:`privaudit.report.html`) open with the
same facts, gathered here from the result and the gate as they are:

- the gate's verdict, its summary line and its failed checks;
- the strongest attack (:func:`privaudit.mia.records.strongest_attack`, the rule ``--top`` ranks members by) with its
  TPR at 1% FPR and that TPR's interval;
- the largest empirical epsilon lower bound of any attack, beside the theoretical epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from privaudit.gate.measurements import format_number
from privaudit.mia.records import STRONGEST_FPR, largest_epsilon_bound, strongest_attack

if TYPE_CHECKING:
    from privaudit.gate.gate import Check, GateResult
    from privaudit.mia.run import AttackResult, MiaResult
    from privaudit.stats.metrics import TprAtFpr


@dataclass(frozen=True)
class Headline:
    """The facts a membership-inference report leads with.

    Attributes:
        verdict: the gate's ``"pass"`` or ``"fail"``; ``None`` when no gate ran (a report from the Python API).
        summary: the gate's summary line (``fail: 1 of 3 checks failed``), or ``None`` without a gate.
        failed: the gate's failed checks, in its order.
        strongest: the strongest attack, or ``None`` when no attack ran.
        strongest_tpr: its TPR at 1% FPR, or ``None`` when that point was not measured or is not supported.
        largest_bound: the attack with the largest empirical epsilon lower bound, or ``None`` when no attack ran.
        theoretical_epsilon: the model's claimed epsilon, ``None`` without DP.
        exceeded: whether that largest bound is above the theoretical epsilon.
    """

    verdict: str | None
    summary: str | None
    failed: tuple[Check, ...]
    strongest: AttackResult | None
    strongest_tpr: TprAtFpr | None
    largest_bound: AttackResult | None
    theoretical_epsilon: float | None
    exceeded: bool

    @property
    def confidence(self) -> str:
        """The level of the intervals and bounds, e.g. ``95%``."""
        attack = self.strongest or self.largest_bound
        return "95%" if attack is None else f"{(1 - attack.metrics.alpha) * 100:g}%"


def headline(result: MiaResult, gate: GateResult | None = None) -> Headline:
    """The headline facts of ``result`` and ``gate``, picked, not computed."""
    strongest = strongest_attack(result.attacks)
    point = None
    if strongest is not None:
        point = next((t for t in strongest.metrics.tpr_at_fpr if abs(t.fpr - STRONGEST_FPR) < 1e-12), None)
        point = point if point is not None and point.supported else None
    largest = largest_epsilon_bound(result.attacks)
    eps = result.theoretical_epsilon
    return Headline(
        verdict=None if gate is None else gate.verdict,
        summary=None if gate is None else gate.summary(),
        failed=() if gate is None else tuple(gate.failed),
        strongest=strongest,
        strongest_tpr=point,
        largest_bound=largest,
        theoretical_epsilon=eps,
        exceeded=largest is not None and eps is not None and largest.metrics.epsilon_lower_bound > eps,
    )


def check_line(check: Check) -> str:
    """A failed check in one short line: ``lira-offline: tpr@1%fpr <= 0.05 (measured 0.1234)``."""
    m = check.measurement
    measured = "" if m is None or m.value is None else f" (measured {format_number(m.value)})"
    return f"{check.subject}: {check.name}{measured}"


__all__ = ["Headline", "headline", "check_line"]

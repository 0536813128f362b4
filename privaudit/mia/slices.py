"""Slices: the attack metrics on subsets of the audited examples, as TF Privacy's ``SlicingSpec`` computes them.

A slice kind splits every audited example (members and non-members alike) into groups:

- ``class``: by true label, one slice per label present (``class=transfer_money``);
- ``correctness``: by whether the target model's argmax is the true label (``correctness=correct``,
  ``correctness=wrong``).

Each slice is measured with :func:`privaudit.stats.metrics.evaluate` on the attacks' scores of the single scoring
pass, restricted to the slice. A slice with fewer than ``min_per_side`` members or non-members (default
:data:`DEFAULT_MIN_PER_SIDE`) is kept and marked "too few examples" with its counts, never dropped: the gate
skips it. The slices of one kind partition the audit, so their counts add up to the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.stats.metrics import AttackMetrics, evaluate

if TYPE_CHECKING:
    from privaudit.mia.records import Examples
    from privaudit.mia.run import AttackResult

SLICE_KINDS = ("class", "correctness")
CORRECTNESS_VALUES = ("correct", "wrong")
DEFAULT_MIN_PER_SIDE = 20


def check_slice_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The slice kinds asked for, deduplicated in order.

    Raises:
        PrivauditError: on a kind that is not one of :data:`SLICE_KINDS`.
    """
    for kind in kinds:
        if kind not in SLICE_KINDS:
            raise PrivauditError(f"--slice '{kind}' is unknown; choose from: {', '.join(SLICE_KINDS)}")
    return tuple(dict.fromkeys(kinds))


@dataclass(frozen=True)
class SliceAttack:
    """One attack's metrics on one slice."""

    name: str
    metrics: AttackMetrics

    def to_dict(self) -> dict:
        return {"name": self.name, **self.metrics.to_dict()}


@dataclass(frozen=True)
class Slice:
    """One slice of the audited examples and, when it is large enough, every attack's metrics on it.

    Attributes:
        kind: ``"class"`` or ``"correctness"``.
        value: the label name, or ``"correct"`` / ``"wrong"``.
        n_members: members in the slice.
        n_non_members: non-members in the slice.
        min_per_side: the minimum on each side for the slice to be measured.
        attacks: one entry per attack, in ``--attack`` order; empty when the slice is too small.
    """

    kind: str
    value: str
    n_members: int
    n_non_members: int
    min_per_side: int
    attacks: tuple[SliceAttack, ...] = ()

    @property
    def subject(self) -> str:
        """The slice's gate subject, e.g. ``class=transfer_money``; ``class=transfer_money/loss`` for one attack."""
        return f"{self.kind}={self.value}"

    @property
    def measured(self) -> bool:
        return min(self.n_members, self.n_non_members) >= self.min_per_side

    @property
    def note(self) -> str | None:
        """``too few examples: 7 members, 12 non-members (at least 20 a side)``, or ``None`` when measured."""
        if self.measured:
            return None
        return (
            f"too few examples: {self.n_members} members, {self.n_non_members} non-members "
            f"(at least {self.min_per_side} a side)"
        )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "value": self.value,
            "subject": self.subject,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "measured": self.measured,
            "note": self.note,
            "attacks": [a.to_dict() for a in self.attacks],
        }


@dataclass(frozen=True)
class Slices:
    """Every slice asked for with ``--slice``, kind by kind.

    Attributes:
        kinds: the slice kinds, in the order asked.
        min_per_side: ``--slice-min``.
        slices: kind by kind; within a kind, sorted by value.
    """

    kinds: tuple[str, ...]
    min_per_side: int
    slices: tuple[Slice, ...]

    def of_kind(self, kind: str) -> list[Slice]:
        return [s for s in self.slices if s.kind == kind]

    def to_dict(self) -> dict:
        return {
            "kinds": list(self.kinds),
            "min_per_side": self.min_per_side,
            "slices": [s.to_dict() for s in self.slices],
        }


def slice_masks(kind: str, examples: Examples) -> dict[str, np.ndarray]:
    """The boolean mask of each slice of one kind, by value (sorted); the masks partition the examples.

    Raises:
        PrivauditError: when the audit lacks what the kind needs (labels, or logits for correctness).
    """
    if kind == "class":
        if examples.labels is None:
            raise PrivauditError("--slice class needs labels: audit a model, or --scores with 'label' and 'logits'")
        labels = np.asarray(examples.labels)
        return {value: labels == value for value in sorted(set(examples.labels))}
    if kind == "correctness":
        if examples.correct is None:
            raise PrivauditError("--slice correctness needs logits: audit a model, or --scores with 'logits'")
        return {"correct": examples.correct.copy(), "wrong": ~examples.correct}
    raise PrivauditError(f"--slice '{kind}' is unknown; choose from: {', '.join(SLICE_KINDS)}")


def compute_slices(
    kinds: Sequence[str],
    *,
    examples: Examples,
    is_member: np.ndarray,
    attacks: Sequence[AttackResult],
    min_per_side: int = DEFAULT_MIN_PER_SIDE,
    alpha: float = 0.05,
    delta: float = 0.0,
    seed: int = 0,
) -> Slices:
    """Measure every attack on every slice of each kind, from the scores already computed.

    Args:
        kinds: slice kinds (:data:`SLICE_KINDS`).
        examples: what is known of each audited example.
        is_member: ground truth, audit order.
        attacks: the attacks' results (their ``scores``), audit order.
        min_per_side: the fewest members and non-members a slice needs to be measured, ``>= 2``.
        alpha: as :func:`~privaudit.stats.metrics.evaluate`.
        delta: as :func:`~privaudit.stats.metrics.evaluate`.
        seed: as :func:`~privaudit.stats.metrics.evaluate`; the same for every slice.

    Raises:
        PrivauditError: an unknown kind, ``min_per_side < 2``, or a kind the audit cannot slice by.
    """
    kinds = check_slice_kinds(kinds)
    if min_per_side < 2:
        raise PrivauditError(f"--slice-min must be at least 2 (the epsilon bound splits each side), got {min_per_side}")
    member = np.asarray(is_member, dtype=bool)
    out = []
    for kind in kinds:
        for value, mask in slice_masks(kind, examples).items():
            n_in, n_out = int((mask & member).sum()), int((mask & ~member).sum())
            measured = min(n_in, n_out) >= min_per_side
            results = tuple(
                SliceAttack(a.name, evaluate(a.scores[mask], member[mask], alpha=alpha, delta=delta, seed=seed))
                for a in attacks
                if measured
            )
            out.append(Slice(kind, value, n_in, n_out, min_per_side, results))
    return Slices(kinds=kinds, min_per_side=min_per_side, slices=tuple(out))

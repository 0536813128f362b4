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
from typing import TYPE_CHECKING

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.mia.types import Slice, SliceAttack, Slices  # noqa: F401 (re-exported: the names' old home)
from privaudit.stats.metrics import evaluate

if TYPE_CHECKING:
    from privaudit.mia.types import AttackResult, Examples

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

"""Slice subjects of the gate: ``class=transfer_money``, ``class=transfer_money/loss``, ``correctness=wrong``, ``class=*``.

A slice subject is ``KIND=VALUE`` or ``KIND=VALUE/ATTACK`` (see :mod:`privaudit.mia.slices`):

- ``class=transfer_money/loss:auc=0.6`` limits the ``loss`` attack's AUC on the slice;
- ``class=transfer_money:auc=0.6`` limits the largest AUC of any attack on the slice (the strongest attack there,
  metric by metric);
- ``*`` in the value matches every slice of the kind: ``class=*:auc=0.7``, ``class=*/loss:auc=0.7``.

A threshold without a subject (``auc=0.6``) applies to the attacks on the whole audit only, never to slices: a
slice is gated only when named, as small slices are noisy. A slice with too few examples is reported as skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING

from privaudit.errors import PrivauditError
from privaudit.gate.measurements import is_slice_subject
from privaudit.mia.slices import CORRECTNESS_VALUES, SLICE_KINDS

if TYPE_CHECKING:
    from privaudit.gate.gate import Threshold
    from privaudit.mia.slices import Slices


def split_slice_subject(subject: str, attacks: Collection[str]) -> tuple[str, str, str | None]:
    """``("class", "transfer_money", "loss")`` from ``class=transfer_money/loss``; the attack is ``None`` if absent.

    The part after the last ``/`` is read as an attack only when it names one of ``attacks``, so a label holding a
    ``/`` still works.
    """
    kind, _, rest = subject.partition("=")
    value, slash, attack = rest.rpartition("/")
    if slash and attack in attacks:
        return kind, value, attack
    return kind, rest, None


class MiaSubjects(Collection[str]):
    """The subjects a ``privaudit mia`` threshold may name: attacks, and slices of the kinds asked for.

    Args:
        attacks: the attack names (built-in, plugins, ``precomputed``).
        slice_kinds: the ``--slice`` kinds of this run; a slice subject of another kind is unknown.
    """

    def __init__(self, attacks: Sequence[str], *, slice_kinds: Sequence[str] = ()) -> None:
        self.attacks = list(attacks)
        self.slice_kinds = tuple(slice_kinds)

    def __contains__(self, subject: object) -> bool:
        if not isinstance(subject, str):
            return False
        if not is_slice_subject(subject):
            return subject in self.attacks
        kind, value, _ = split_slice_subject(subject, self.attacks)
        if kind not in self.slice_kinds or not value:
            return False
        return kind != "correctness" or value == "*" or value in CORRECTNESS_VALUES

    def __iter__(self) -> Iterator[str]:
        # Slices first: a message lists only the first few subjects.
        for kind in SLICE_KINDS:
            yield f"{kind}=VALUE[/ATTACK]" if kind in self.slice_kinds else f"{kind}=... (needs --slice {kind})"
        yield from self.attacks

    def __len__(self) -> int:
        return len(self.attacks) + len(SLICE_KINDS)


def check_slice_subjects(thresholds: Sequence[Threshold], slices: Slices | None, attacks: Collection[str]) -> None:
    """After the audit: every slice a threshold names exactly must exist (a mistyped class is an error, not a skip).

    Raises:
        PrivauditError: naming the threshold, its source and the slices there are.
    """
    if slices is None:
        return
    known = {s.subject for s in slices.slices}
    for t in thresholds:
        if t.subject is None or not is_slice_subject(t.subject) or "*" in t.subject:
            continue
        kind, value, _ = split_slice_subject(t.subject, attacks)
        if f"{kind}={value}" not in known:
            values = ", ".join(s.value for s in slices.of_kind(kind))
            raise PrivauditError(f"{t.source}: no slice '{kind}={value}' in '{t.key}'; {kind} slices: {values}")

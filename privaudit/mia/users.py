"""User-level membership inference (``--group-by FIELD``): the audit's record scores, judged per user.

A column of the data names each record's owner. Members and non-members are then users: every record of a member
user is in the training set, no record of a non-member user is (:func:`check_users` refuses a user on both sides).
The attacks still score records; this stage aggregates each attack's record scores per user
(:func:`privaudit.stats.groups.aggregate`) and hands the audit's metrics, slices, per-example lines and reports a
view in which every "example" is a user (:func:`user_view`). The aggregation is given (``--group-aggregate``), or
chosen on the reference models' population users (:func:`choose_on_references`), never with the audit's membership.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from privaudit.data import TextDataset
from privaudit.errors import PrivauditError
from privaudit.mia.types import UserLevel  # noqa: F401 (re-exported: the names' old home)
from privaudit.stats.groups import (
    AGGREGATES,
    DEFAULT_AGGREGATE,
    aggregate,
    choose_aggregate,
    group_index,
    records_per_user,
)
from privaudit.stats.logits import losses

if TYPE_CHECKING:
    from privaudit.mia.types import AttackResult, Examples
    from privaudit.training.reference import ReferenceSignals

AUTO = "auto"


def check_aggregate(name: str | None) -> str | None:
    """``--group-aggregate`` as given (``None`` or ``"auto"``: chosen), or exit 2 naming the choices."""
    if name is None or name == AUTO:
        return None
    if name not in AGGREGATES:
        raise PrivauditError(f"--group-aggregate '{name}' is unknown; choose from: {AUTO}, {', '.join(AGGREGATES)}")
    return name


def check_users(members: TextDataset, non_members: TextDataset, population: TextDataset | None = None) -> None:
    """Refuse a user with records on both sides, or an audited user in the population.

    Only the user's id is named, never a text (texts may be secret; ids are the caller's own labels).

    Raises:
        PrivauditError: one line naming the first such user.
    """
    field_name = members.group_by
    inside = set(members.groups or ())
    both = next((u for u in non_members.groups or () if u in inside), None)
    if both is not None:
        raise PrivauditError(
            f"--group-by {field_name}: user '{both}' has records in both --members ({members.path}) and "
            f"--non-members ({non_members.path}); a user's records must all be on one side"
        )
    if population is not None and population.groups is not None:
        audited = inside | set(non_members.groups or ())
        clash = next((u for u in population.groups if u in audited), None)
        if clash is not None:
            raise PrivauditError(
                f"--group-by {field_name}: user '{clash}' of --population ({population.path}) is also audited; "
                "the population's users must be others"
            )


def choose_on_references(reference: ReferenceSignals | None, population: TextDataset | None, population_labels):
    """The aggregation that best attacks the reference models' population users with the LOSS signal.

    Each reference model's record scores on the population are its negative losses (the LOSS attack, Yeom et al.
    2018): the attacks of the audit cannot in general be run with a reference model as their target, so the
    aggregation is chosen on the signal they all refine. Returns ``(method, how, tpr_by_method)``.
    """
    if (
        reference is None
        or reference.population_is_in is None
        or reference.population_logits is None
        or population is None
        or population.groups is None
    ):
        return DEFAULT_AGGREGATE, "default (no reference models trained by privaudit on the population's users)", {}
    _, inverse = group_index(population.groups)
    scores = -losses(reference.population_logits, population_labels)
    method, tpr = choose_aggregate(scores, reference.population_is_in, inverse)
    if not tpr:
        return DEFAULT_AGGREGATE, "default (no reference model has both member and non-member users)", {}
    return method, "chosen on the reference models (LOSS signal, population users)", tpr


def _majority(values: Sequence, inverse: np.ndarray, n_users: int) -> list:
    counts: list[Counter] = [Counter() for _ in range(n_users)]
    for value, user in zip(values, inverse, strict=True):
        counts[user][value] += 1
    return [c.most_common(1)[0][0] for c in counts]  # ties: the value met first (Counter keeps insertion order)


def user_view(
    *,
    groups: Sequence[str],
    is_member: np.ndarray,
    examples: Examples,
    results: Sequence[AttackResult],
    method: str,
    evaluate_users,
) -> tuple[list[AttackResult], np.ndarray, Examples]:
    """The audit seen per user: each attack's scores aggregated, the ground truth and what is known of each user.

    Args:
        groups: each audited record's owner, audit order (members first).
        is_member: record ground truth.
        examples: what is known of each record.
        results: the record-level attack results.
        method: the aggregation.
        evaluate_users: ``scores, is_member -> AttackMetrics``, the audit's own measure.

    Returns:
        ``(results, is_member, examples)`` with one entry per user, members first.
    """
    from dataclasses import replace

    from privaudit.mia.types import Examples

    users, inverse = group_index(groups)
    n_users = len(users)
    user_member = np.zeros(n_users, dtype=bool)
    user_member[inverse[np.asarray(is_member, dtype=bool)]] = True
    first = np.full(n_users, -1)
    for i in range(len(inverse) - 1, -1, -1):
        first[inverse[i]] = i
    records = records_per_user(inverse, n_users)
    correct = None
    if examples.correct is not None:
        share = np.bincount(inverse, weights=examples.correct.astype(float), minlength=n_users) / records
        correct = share >= 0.5
    view = Examples(
        sets=tuple(examples.sets[i] for i in first),
        files=tuple(examples.files[i] for i in first),
        index=np.asarray(examples.index)[first],
        labels=None if examples.labels is None else tuple(_majority(examples.labels, inverse, n_users)),
        correct=correct,
        users=users,
        records=records,
    )
    out = []
    for result in results:
        scores = aggregate(result.scores, inverse, method, n_users=n_users)
        out.append(replace(result, metrics=evaluate_users(scores, user_member), scores=scores))
    return out, user_member, view


__all__ = ["AUTO", "UserLevel", "check_aggregate", "check_users", "choose_on_references", "user_view"]

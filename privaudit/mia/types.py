"""The audit's data, below the modules that compute it: what ``privaudit mia`` measured (:class:`MiaResult`, one
:class:`AttackResult` per attack), the audited examples (:class:`Examples`), the most exposed members, the slices and
the user-level view. ``run``, ``records``, ``slices`` and ``users`` compute these and import them from here, so no two
modules of the package lean on each other (``tests/test_layout.py``); their old import paths keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from privaudit import __version__
from privaudit.stats.groups import group_privacy
from privaudit.stats.metrics import AttackMetrics

SCHEMA = "privaudit.mia/1"


def _finite(x: float) -> float | None:  # JSON has no infinity
    return None if not np.isfinite(x) else float(x)


@dataclass
class AttackResult:
    """One attack's scores and what they show."""

    name: str
    description: str
    params: dict
    metrics: AttackMetrics
    scores: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "params": self.params, **self.metrics.to_dict()}


@dataclass
class MiaResult:
    """A whole membership-inference audit: data first, text second (``summary`` and the reporters)."""

    model: dict
    seed: int
    theoretical_epsilon: float | None
    delta: float
    n_members: int
    n_non_members: int
    n_reference_models: int
    attacks: list[AttackResult]
    is_member: np.ndarray = field(repr=False)
    examples: Examples | None = field(default=None, repr=False)
    most_exposed: MostExposed | None = None
    slices: Slices | None = None

    compute: dict | None = None  # device, precision, torch and executor; None for --scores
    users: UserLevel | None = None  # --group-by: every count, metric and example above is per user

    def to_dict(self) -> dict:
        """The JSON document of ``--format json``, less the ``gate`` section that the gate's run adds.

        Its layout is ``docs/schema-mia.json``, versioned by ``schema``; the gate is added by
        :func:`privaudit.report.formats.report_document`. Per-example data is not in it (see
        :func:`privaudit.mia.records.example_rows`), only the ``most_exposed`` members (``--top``) and the ``slices``
        (``--slice``), each present when asked for.
        """
        document = {
            "schema": SCHEMA,
            "tool": {"name": "privaudit", "version": __version__},
            "seed": self.seed,
            "model": self.model,
            "theoretical_epsilon": self.theoretical_epsilon,
            "delta": self.delta,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "n_reference_models": self.n_reference_models,
            "attacks": [a.to_dict() for a in self.attacks],
            "compute": self.compute,
        }
        if self.most_exposed is not None:
            document["most_exposed"] = self.most_exposed.to_dict()
        if self.slices is not None:
            document["slices"] = self.slices.to_dict()
        if self.users is not None:
            document["users"] = self.users.to_dict()
        return document

    def claimed_epsilon(self) -> float | None:
        """The ε the attacks' bounds answer to: the theoretical ε per record, or per user (``--group-by``) the
        group-privacy ε of the largest user, when its δ is no larger than the audit's (the bounds are measured at
        the audit's δ); ``None`` when nothing is claimed."""
        if self.theoretical_epsilon is None or self.users is None:
            return self.theoretical_epsilon
        group = self.users.group_privacy()
        if group is None or group[1] > self.delta:
            return None
        return group[0]

    def exceeded(self) -> list[AttackResult]:
        """Attacks whose empirical bound is above the claimed epsilon (:meth:`claimed_epsilon`): a DP bug or wrong
        metadata."""
        eps = self.claimed_epsilon()
        if eps is None:
            return []
        return [a for a in self.attacks if a.metrics.epsilon_lower_bound > eps]


@dataclass(frozen=True)
class Examples:
    """What is known of each audited example, in audit order (members first, then non-members).

    Attributes:
        sets: ``"members"`` or ``"non_members"`` per example (for ``--scores``, by its ``member`` column).
        files: the file each example came from, per example.
        index: the example's 0-based position among the records of its file.
        sha256: :func:`text_sha256` of its text; ``None`` when the audit had no texts (``--scores``).
        texts: the texts; ``None`` under ``--redact-texts`` or without texts. Never held when redacted.
        labels: the label names (ids as strings when the audit had no model); ``None`` without labels.
        correct: whether the target model's argmax is the true label; ``None`` without logits.
        users: under ``--group-by``, each entry is a user: its id (``index`` is then its first record's position
            in its file, ``labels`` its most frequent label, ``correct`` whether the model is right on at least half
            of its records, and there is no text or hash); ``None`` for records.
        records: under ``--group-by``, each user's number of records.
    """

    sets: tuple[str, ...]
    files: tuple[str, ...]
    index: np.ndarray = field(repr=False)
    sha256: tuple[str, ...] | None = field(default=None, repr=False)
    texts: tuple[str, ...] | None = field(default=None, repr=False)
    labels: tuple[str, ...] | None = field(default=None, repr=False)
    correct: np.ndarray | None = field(default=None, repr=False)
    users: tuple[str, ...] | None = field(default=None, repr=False)
    records: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.sets)


@dataclass(frozen=True)
class ExposedMember:
    """One of the most exposed members: its rank, where it came from, and how far it stands out.

    Attributes:
        rank: 1 for the member with the highest score under the strongest attack.
        set: ``"members"``.
        file: its file.
        index: its 0-based position in that file.
        sha256: :func:`text_sha256` of its text, or ``None`` without texts.
        text: the text; ``None`` under ``--redact-texts`` or without texts.
        label: its label name, or ``None``.
        score: its score under the strongest attack.
        flag_fpr: the share of non-members at or above that score: the FPR at which it would be flagged.
        user: under ``--group-by``, the member user's id (the entry is that user); else ``None``.
        records: under ``--group-by``, that user's number of records.
    """

    rank: int
    set: str
    file: str
    index: int
    sha256: str | None
    text: str | None
    label: str | None
    score: float
    flag_fpr: float
    user: str | None = None
    records: int | None = None

    def to_dict(self, *, with_text: bool = True) -> dict:
        # No file path: it is --members' (or --scores'), and leaving it out keeps the document the same wherever the
        # data was read from (a file, or records in memory through privaudit.audit_membership).
        row = {
            "rank": self.rank,
            "set": self.set,
            "index": self.index,
            "sha256": self.sha256,
            "label": self.label,
            "score": self.score,
            "flag_fpr": self.flag_fpr,
        }
        if self.user is not None:
            row["user"] = self.user
            row["records"] = self.records
        if with_text and self.text is not None:
            row["text"] = self.text
        return row


@dataclass(frozen=True)
class MostExposed:
    """The ``--top N`` members with the highest scores under the strongest attack.

    Attributes:
        attack: the strongest attack's name.
        rule: how it was chosen (:data:`STRONGEST_RULE`).
        n: the ``N`` asked for (the list may be shorter when there are fewer members).
        members: best first; ties keep audit order.
    """

    attack: str
    rule: str
    n: int
    members: tuple[ExposedMember, ...]

    def to_dict(self) -> dict:
        return {"attack": self.attack, "rule": self.rule, "n": self.n, "members": [m.to_dict() for m in self.members]}


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


@dataclass(frozen=True)
class UserLevel:
    """What the user-level view was built from: the ``users`` section of the JSON report.

    Attributes:
        field: the ``--group-by`` column.
        aggregate: the aggregation used (:data:`privaudit.stats.groups.AGGREGATES`).
        aggregate_source: ``"given"``, or how it was chosen.
        aggregate_tpr: each aggregation's mean TPR at 1% FPR on the reference models, when chosen there.
        records: each user's number of records, in user order (members first).
        n_member_records: records of member users.
        n_non_member_records: records of non-member users.
        record_level: per attack, the record-level metrics before aggregation.
        epsilon: the record-level theoretical ε (``None`` without DP).
        delta: the audit's δ.
    """

    field: str
    aggregate: str
    aggregate_source: str
    aggregate_tpr: dict[str, float]
    records: np.ndarray = field(repr=False)
    n_member_records: int
    n_non_member_records: int
    record_level: dict[str, AttackMetrics] = field(repr=False)
    epsilon: float | None
    delta: float

    @property
    def max_records(self) -> int:
        return int(self.records.max())

    def group_privacy(self) -> tuple[float, float] | None:
        """(kε, k·e^((k-1)ε)·δ) for the largest user's k records; ``None`` without DP."""
        return group_privacy(self.epsilon, self.delta, self.max_records)

    def to_dict(self) -> dict:
        bound = self.group_privacy()
        return {
            "group_by": self.field,
            "aggregate": self.aggregate,
            "aggregate_source": self.aggregate_source,
            "aggregate_tpr_at_1pct_fpr": self.aggregate_tpr or None,
            "n_member_records": self.n_member_records,
            "n_non_member_records": self.n_non_member_records,
            "records_per_user": {
                "min": int(self.records.min()),
                "median": float(np.median(self.records)),
                "mean": float(self.records.mean()),
                "max": self.max_records,
            },
            "group_privacy": None
            if bound is None
            else {
                "k": self.max_records,
                "epsilon": _finite(bound[0]),
                "delta": _finite(bound[1]),
                "vacuous": not bound[1] < 1.0,
                "rule": "(k*eps, k*exp((k-1)*eps)*delta)-DP for k records (Vadhan 2017, Lemma 2.2)",
            },
            "record_level": {
                name: {
                    "auc": m.auc.value,
                    "tpr_at_fpr": [{"fpr": t.fpr, "tpr": t.tpr, "supported": t.supported} for t in m.tpr_at_fpr],
                    "epsilon_lower_bound": m.epsilon_lower_bound,
                }
                for name, m in self.record_level.items()
            },
        }

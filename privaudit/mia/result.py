"""The results of a membership-inference audit: one :class:`AttackResult` per attack, in a :class:`MiaResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from privaudit import __version__
from privaudit.mia.records import Examples, MostExposed
from privaudit.mia.slices import Slices
from privaudit.mia.users import UserLevel
from privaudit.stats.metrics import AttackMetrics

SCHEMA = "privaudit.mia/1"


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

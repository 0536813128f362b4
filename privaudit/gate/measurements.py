"""Measurements: an audit's results as a flat list of (subject, metric, value, interval), what the gate reads.

``privaudit mia`` measures, per attack, AUC, TPR at each FPR, advantage and the epsilon lower bound, and the same per
slice (``class=NAME/ATTACK``, and ``class=NAME`` for each metric's largest over the attacks); ``privaudit
canary`` measures exposure and extraction per inserted canary and for the set, and the one-run bounds; ``privaudit
dp-audit`` the one-run bounds (f-DP with the (eps, delta) and Gaussian families, Steinke et al.). All are read from a
command's JSON document, so a baseline file and a fresh run give the same measurements.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from privaudit.errors import PrivauditError

if TYPE_CHECKING:
    from privaudit.canary.canaries import Canary
    from privaudit.canary.dpaudit import DpAuditResult
    from privaudit.canary.run import CanaryResult
    from privaudit.mia.run import MiaResult

MIA_FIXED_METRICS = ("auc", "advantage", "epsilon_lb")
# The one-run bounds on the Pareto frontier of thresholds (privaudit.stats.auditor): f-DP with the (eps, delta) family
# (strict), f-DP with the Gaussian family (eps at delta, and mu; assumes a Gaussian trade-off curve), Steinke et al.
ONE_RUN_BOUND_METRICS = ("fdp_epsilon_lb", "gdp_epsilon_lb", "gdp_mu_lb", "steinke_epsilon_lb")
CANARY_METRICS = ("exposure", "extracted", "one_run_epsilon_lb", *ONE_RUN_BOUND_METRICS)
# The likelihood estimate's lower limit (privaudit.stats.gaussian_fit): an estimate, NOT a bound; gated only on request
# (``--fail-if-estimate-exceeds-epsilon``, or ``--fail-above estimate_epsilon_lower=VALUE``).
ESTIMATE_METRIC = "estimate_epsilon_lower"
DP_AUDIT_METRICS = (*ONE_RUN_BOUND_METRICS, ESTIMATE_METRIC)
# Subjects of a canary audit: the inserted canaries as a set, each inserted canary, and the one-run audit canaries.
CANARY_SET = "canaries"
ONE_RUN = "one-run"


def tpr_metric(fpr: float) -> str:
    """The metric name of TPR at a target FPR: ``0.01`` gives ``"tpr@1%fpr"``, ``0.001`` gives ``"tpr@0.1%fpr"``."""
    return f"tpr@{round(fpr * 100, 10):g}%fpr"


def mia_metrics(fprs: Iterable[float] = (0.001, 0.01, 0.1)) -> tuple[str, ...]:
    """The metric names ``privaudit mia`` measures, for the FPRs it evaluates TPR at."""
    return (*MIA_FIXED_METRICS, *(tpr_metric(f) for f in fprs))


@dataclass(frozen=True)
class Measurement:
    """One measured value of one metric for one subject.

    Attributes:
        subject: what was measured: an attack name (``"loss"``) or a canary set name.
        metric: the metric name, e.g. ``"auc"``, ``"tpr@1%fpr"``, ``"exposure"``.
        value: the point estimate; ``None`` when it could not be measured (see ``note``).
        low: lower end of its confidence interval, if it has one.
        high: upper end of its confidence interval, if it has one.
        confidence: the level of that interval, e.g. ``0.95``.
        note: why ``value`` is ``None``, shown on the skipped check.
    """

    subject: str
    metric: str
    value: float | None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    note: str | None = None

    def describe(self) -> str:
        """``0.7006 [95% CI 0.6771, 0.7232]``, or the bare value when there is no interval."""
        if self.value is None:
            return "not measured"
        text = format_number(self.value)
        if self.low is not None and self.high is not None:
            level = f"{self.confidence:.0%} CI " if self.confidence is not None else ""
            text += f" [{level}{format_number(self.low)}, {format_number(self.high)}]"
        return text

    def to_dict(self) -> dict:
        return {"subject": self.subject, "metric": self.metric, "value": self.value, "low": self.low, "high": self.high}


def mia_measurements(result: MiaResult) -> list[Measurement]:
    """The measurements of a membership-inference audit: AUC, TPR@FPR, advantage, epsilon_lb per attack."""
    return measurements_from_mia_dict(result.to_dict())


def measurements_from_mia_dict(document: Mapping) -> list[Measurement]:
    """:func:`mia_measurements` from the JSON document (``privaudit.mia/1``) of ``privaudit mia --format json``.

    Raises:
        PrivauditError: when the document lacks a field the measurements need.
    """
    out: list[Measurement] = []
    try:
        for attack in document["attacks"]:
            out += _attack_measurements(attack["name"], attack)
        if document.get("slices") is not None:
            names = [attack["name"] for attack in document["attacks"]]
            for piece in document["slices"]["slices"]:
                out += _slice_measurements(piece, names, document["attacks"])
    except (KeyError, TypeError) as err:
        raise PrivauditError(f"not a privaudit.mia/1 document: missing or malformed field {err}") from err
    return out


def is_slice_subject(subject: str) -> bool:
    """Whether a subject names a slice (``class=...``, ``correctness=...``); attacks and canaries never hold ``=``."""
    return "=" in subject


def _attack_measurements(name: str, attack: Mapping) -> list[Measurement]:
    level = 1 - attack["alpha"]
    auc = attack["auc"]
    out = [Measurement(name, "auc", auc["value"], auc["low"], auc["high"], level)]
    for t in attack["tpr_at_fpr"]:
        note = None
        if not t["supported"]:
            n_out = attack["n_non_members"]
            note = f"unsupported: {n_out} non-members cannot resolve an FPR of {t['fpr']:g}"
        out.append(Measurement(name, tpr_metric(t["fpr"]), t["tpr"], t["low"], t["high"], level, note))
    out.append(Measurement(name, "advantage", attack["advantage"]))
    out.append(Measurement(name, "epsilon_lb", attack["epsilon_lower_bound"], confidence=level))
    return out


def _slice_measurements(piece: Mapping, names: Sequence[str], attacks: Sequence[Mapping]) -> list[Measurement]:
    """One slice's measurements: ``SLICE/ATTACK`` per attack, and ``SLICE``, each metric's largest over attacks.

    A slice too small to measure gives ``None`` for every metric and subject, with its note, so the gate skips it.
    """
    subject = piece["subject"]
    if not piece["measured"]:
        metrics = mia_metrics(t["fpr"] for t in attacks[0]["tpr_at_fpr"]) if attacks else MIA_FIXED_METRICS
        return [
            Measurement(s, metric, None, note=piece["note"])
            for s in (subject, *(f"{subject}/{name}" for name in names))
            for metric in metrics
        ]
    per_attack = [m for attack in piece["attacks"] for m in _attack_measurements(f"{subject}/{attack['name']}", attack)]
    strongest: dict[str, Measurement] = {}
    for m in per_attack:
        best = strongest.get(m.metric)
        if best is None or (m.value is not None and (best.value is None or m.value > best.value)):
            strongest[m.metric] = m
    combined = [
        Measurement(subject, m.metric, m.value, m.low, m.high, m.confidence, m.note) for m in strongest.values()
    ]
    return combined + per_attack


def canary_subject(index: int) -> str:
    """The subject of one inserted canary: ``canary:3`` is ``canaries[3]`` of the JSON report."""
    return f"canary:{index}"


def canary_subjects(canaries: Sequence[Canary]) -> list[str]:
    """The subjects a canary audit of this canary file measures, for checking ``SUBJECT:METRIC`` before it runs.

    Args:
        canaries: the canary file's records, in file order, as :func:`privaudit.canary.canaries.read_canaries` reads them.
    """
    exposure = [c for c in canaries if c.kind == "exposure"]  # the report's canaries, in the same order
    return [CANARY_SET, ONE_RUN, *(canary_subject(i) for i, c in enumerate(exposure) if c.inserted)]


def canary_measurements(result: CanaryResult) -> list[Measurement]:
    """The measurements of a canary audit: exposure and extraction per inserted canary and as a set, one-run bound."""
    return measurements_from_canary_dict(result.to_dict())


def measurements_from_canary_dict(document: Mapping) -> list[Measurement]:
    """:func:`canary_measurements` from the JSON document (``privaudit.canary/1``) of ``privaudit canary``.

    Subjects and what they measure:

    - ``canaries``: ``exposure``, the largest exposure among the inserted canaries (controls are never gated: a
      control's exposure is chance), and ``extracted``, how many inserted secrets ModIvA recovered exactly;
    - ``canary:<i>``: ``exposure`` and ``extracted`` (0 or 1) of one inserted canary, ``i`` its index in the
      document's ``canaries`` array;
    - ``one-run``: ``one_run_epsilon_lb``, the one-run epsilon lower bound (Steinke et al. 2023).

    A measure that was not run (``--no-exposure``, ``--no-extract``, no ``--one-run``) is ``None`` with a note on the
    set's subject, so a threshold on it is skipped, never passed.

    Raises:
        PrivauditError: when the document lacks a field the measurements need.
    """
    try:
        rows = list(enumerate(document["canaries"]))
        inserted = [(i, row) for i, row in rows if row["inserted"]]
        exposures = [row["exposure"] for _, row in inserted if row["exposure"] is not None]
        extraction_ran = any("extraction" in row for _, row in rows)
        if inserted:
            exposure_note = None if exposures else "exposure was not measured (--no-exposure)"
            extracted_note = None if extraction_ran else "ModIvA extraction was not run (--no-extract)"
        else:
            exposure_note = extracted_note = "the canary file has no inserted exposure canaries"
        extracted = None if extracted_note else sum(bool(row["extraction"]["recovered"]) for _, row in inserted)
        out = [
            Measurement(CANARY_SET, "exposure", max(exposures, default=None), note=exposure_note),
            Measurement(CANARY_SET, "extracted", extracted, note=extracted_note),
        ]
        for i, row in inserted:
            if row["exposure"] is not None:
                out.append(Measurement(canary_subject(i), "exposure", row["exposure"]))
            if "extraction" in row:
                out.append(Measurement(canary_subject(i), "extracted", int(bool(row["extraction"]["recovered"]))))
        one_run = document["one_run"]
        if one_run is None:
            note = "the one-run audit was not run (pass --one-run)"
            out.append(Measurement(ONE_RUN, "one_run_epsilon_lb", None, note=note))
            out += [Measurement(ONE_RUN, metric, None, note=note) for metric in ONE_RUN_BOUND_METRICS]
        else:
            level = 1 - one_run["p"]
            out.append(Measurement(ONE_RUN, "one_run_epsilon_lb", one_run["epsilon_lower_bound"], confidence=level))
            bounds = document.get("one_run_bounds")  # optional: absent from documents of older versions
            if bounds is None:
                note = "no f-DP bounds in this document (written by an older privaudit, or delta = 0)"
                out += [Measurement(ONE_RUN, metric, None, note=note) for metric in ONE_RUN_BOUND_METRICS]
            else:
                out += one_run_bound_measurements(bounds, ONE_RUN)
    except (KeyError, TypeError) as err:
        raise PrivauditError(f"not a privaudit.canary/1 document: missing or malformed field {err}") from err
    return out


def one_run_bound_measurements(bounds: Mapping, subject: str) -> list[Measurement]:
    """The four one-run bound measurements of an ``OneRunBounds`` document (``bounds``: its ``to_dict()``, or a
    ``privaudit.dp-audit/1`` document, which holds the same fields), at confidence ``1 - alpha``."""
    level = 1 - bounds["alpha"]
    b = bounds["bounds"] if "bounds" in bounds else bounds
    return [
        Measurement(subject, "fdp_epsilon_lb", b["eps_delta"]["epsilon"], confidence=level),
        Measurement(subject, "gdp_epsilon_lb", b["gaussian"]["epsilon"], confidence=level),
        Measurement(subject, "gdp_mu_lb", b["gaussian"]["mu"], confidence=level),
        Measurement(subject, "steinke_epsilon_lb", b["steinke"]["epsilon"], confidence=level),
    ]


def dp_audit_measurements(result: DpAuditResult) -> list[Measurement]:
    """The measurements of ``privaudit dp-audit``: the four one-run bounds and the estimate's lower limit."""
    return measurements_from_dp_audit_dict(result.to_dict())


def measurements_from_dp_audit_dict(document: Mapping) -> list[Measurement]:
    """:func:`dp_audit_measurements` from the JSON document (``privaudit.dp-audit/1``) of ``privaudit dp-audit``.

    Subject ``one-run``: ``fdp_epsilon_lb`` (f-DP, (eps, delta) family: the bound ``--fail-if-bound-exceeds-epsilon``
    checks), ``gdp_epsilon_lb`` and ``gdp_mu_lb`` (f-DP, Gaussian family: assumes a Gaussian trade-off curve),
    ``steinke_epsilon_lb`` (Steinke et al. 2023) and, when the document has an ``estimate``,
    ``estimate_epsilon_lower``: the lower confidence limit of the equal-variance Gaussian fit's epsilon, an estimate
    and not a bound (the check ``--fail-if-estimate-exceeds-epsilon`` reads).

    Raises:
        PrivauditError: when the document lacks a field the measurements need.
    """
    try:
        found = one_run_bound_measurements(document, ONE_RUN)
        estimate = document.get("estimate")
        if estimate is not None:
            lower = estimate["epsilon_lower"]
            level = 1 - float(estimate["alpha"])
            # JSON writes an infinite limit (scores of zero spread, perfectly apart) as null; the gate gets the
            # largest float instead, which fails any claim and still writes as a JSON number.
            value = sys.float_info.max if lower is None or math.isinf(lower) else float(lower)
            found.append(Measurement(ONE_RUN, ESTIMATE_METRIC, value, confidence=level, note=estimate["label"]))
        return found
    except (KeyError, TypeError) as err:
        raise PrivauditError(f"not a privaudit.dp-audit/1 document: missing or malformed field {err}") from err


def format_number(x: float) -> str:
    """Four significant digits, as every gate message writes a value."""
    return f"{x:.4g}"

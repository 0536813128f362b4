"""The CI gate: thresholds and baselines over measurements, to checks, a verdict and an exit code.

The gate knows nothing about attacks or canaries. A command turns its result into a flat list of
:class:`~privaudit.gate.measurements.Measurement` (one value of one metric for one subject: an attack, a canary set, one
canary; see :mod:`privaudit.gate.measurements`) and the gate compares them with three kinds of threshold:

- ``fail_above``: ``auc=0.6`` fails when a measured value is above 0.6. ``loss:auc=0.6`` applies to one subject
  only and, for that subject, overrides the same metric given without a subject.
- ``max_increase``: ``auc=0.02`` fails when a value is more than 0.02 above the same subject's value in a baseline.
- ``epsilon_claim``: an empirical epsilon lower bound above the theoretical epsilon (a DP bug or wrong metadata).

A slice subject (``class=transfer_money``, ``class=*/loss``; see :mod:`privaudit.gate.slices`) is gated only by a
threshold that names it, or a pattern with ``*`` that matches it; a threshold without a subject leaves slices alone.

Values are compared by their point estimate; the interval is reported beside it. A measurement that could not be
taken (``value is None``, e.g. TPR at an FPR that the number of non-members cannot resolve) gives a *skipped*
check, never a silent pass. Exit codes follow ruff and mypy: 0 passed, 1 a threshold breached; errors (exit 2)
are raised as :class:`~privaudit.errors.PrivauditError`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from privaudit.errors import PrivauditError
from privaudit.gate.measurements import ESTIMATE_METRIC, Measurement, format_number, is_slice_subject, tpr_metric
from privaudit.ranges import check_epsilon, check_limit

Kind = Literal["fail_above", "max_increase", "epsilon_claim"]
Status = Literal["passed", "failed", "skipped"]

_TPR = re.compile(r"tpr@(?P<pct>\d+(?:\.\d+)?)%fpr")
_ABS_TOL = 1e-12  # a value equal to its limit up to float noise is not above it


@dataclass(frozen=True)
class Threshold:
    """One limit, as given on the command line or in a config file.

    Attributes:
        kind: ``"fail_above"``, ``"max_increase"`` or ``"epsilon_claim"``.
        metric: the metric it limits.
        limit: the largest value (``fail_above``, ``epsilon_claim``) or increase (``max_increase``) that passes;
            ``None`` for an ``epsilon_claim`` without a theoretical epsilon.
        subject: the one subject it applies to, or ``None`` for every subject.
        source: where it came from, for messages: ``"--fail-above"``, ``"pyproject.toml tool.privaudit.mia.fail_above"``.
    """

    kind: Kind
    metric: str
    limit: float | None
    subject: str | None = None
    source: str = ""

    @property
    def key(self) -> str:
        """``"metric"`` or ``"subject:metric"``, as written in flags and config files."""
        return self.metric if self.subject is None else f"{self.subject}:{self.metric}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One threshold applied to one subject's measurement.

    Attributes:
        threshold: the threshold checked.
        subject: the subject checked.
        status: ``"passed"``, ``"failed"`` or ``"skipped"`` (could not be checked; ``message`` says why).
        measurement: the measurement, or ``None`` when the subject did not report the metric.
        baseline: the baseline value (``max_increase`` only).
        message: one line for humans, e.g. ``loss: auc = 0.7006 [95% CI 0.6771, 0.7232] is above 0.55``.
    """

    threshold: Threshold
    subject: str
    status: Status
    measurement: Measurement | None
    message: str
    baseline: float | None = None

    @property
    def metric(self) -> str:
        return self.threshold.metric

    @property
    def name(self) -> str:
        """A stable name, e.g. ``auc <= 0.6``, ``auc increase <= 0.02``, ``epsilon_lb <= theoretical epsilon``."""
        limit = "" if self.threshold.limit is None else format_number(self.threshold.limit)
        if self.threshold.kind == "max_increase":
            return f"{self.metric} increase <= {limit}"
        if self.threshold.kind == "epsilon_claim":
            return f"{self.metric} <= theoretical epsilon {limit}".rstrip()
        return f"{self.metric} <= {limit}"

    def to_dict(self) -> dict:
        m = self.measurement
        return {
            "name": self.name,
            "kind": self.threshold.kind,
            "subject": self.subject,
            "metric": self.metric,
            "status": self.status,
            "value": None if m is None else m.value,
            "low": None if m is None else m.low,
            "high": None if m is None else m.high,
            "limit": self.threshold.limit,
            "baseline": self.baseline,
            "source": self.threshold.source,
            "message": self.message,
        }


@dataclass(frozen=True)
class GateResult:
    """Every check of one run, and what they add up to.

    Attributes:
        thresholds: the thresholds that were applied.
        checks: one per (threshold, subject), in threshold order.
        exit_zero: ``--exit-zero``: report breaches but exit 0.
        baseline: the baseline file compared with, if any.
    """

    thresholds: tuple[Threshold, ...]
    checks: tuple[Check, ...]
    exit_zero: bool = False
    baseline: str | None = None

    def by_status(self, status: Status) -> list[Check]:
        return [c for c in self.checks if c.status == status]

    @property
    def failed(self) -> list[Check]:
        return self.by_status("failed")

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        return "fail" if self.failed else "pass"

    @property
    def exit_code(self) -> int:
        """0 when every check passed or was skipped (or ``exit_zero``), 1 when one failed."""
        return 1 if self.failed and not self.exit_zero else 0

    def summary(self) -> str:
        """``fail: 1 of 3 checks failed, 1 skipped``, ``pass: 3 checks passed``, or ``pass: no thresholds set``."""
        if not self.checks:
            return f"{self.verdict}: no thresholds set"
        n_passed, n_failed = len(self.by_status("passed")), len(self.failed)
        if n_failed:
            text = f"fail: {n_failed} of {len(self.checks)} checks failed"
        else:
            text = f"pass: {n_passed} check{'s' * (n_passed != 1)} passed"
        n_skipped = len(self.by_status("skipped"))
        if n_skipped:
            text += f", {n_skipped} skipped"
        if self.failed and self.exit_zero:
            text += " (--exit-zero: exit code 0)"
        return text

    def to_dict(self) -> dict:
        """The ``gate`` section of the JSON report (see ``docs/schema-mia.json``, ``docs/schema-canary.json``)."""
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "exit_zero": self.exit_zero,
            "baseline": self.baseline,
            "thresholds": [t.to_dict() for t in self.thresholds],
            "checks": [c.to_dict() for c in self.checks],
            "summary": {s: len(self.by_status(s)) for s in ("passed", "failed", "skipped")},
        }


def parse_threshold(
    spec: str,
    *,
    kind: Kind = "fail_above",
    metrics: Collection[str],
    subjects: Collection[str] | None = None,
    source: str = "",
    noun: str = "attack",
) -> Threshold:
    """Parse ``METRIC=VALUE`` or ``SUBJECT:METRIC=VALUE``.

    Args:
        spec: e.g. ``"auc=0.6"``, ``"lira-offline:tpr@1%fpr=0.05"``, ``"canary:3:exposure=12"``.
        kind: ``"fail_above"`` or ``"max_increase"`` (whose value must be ``>= 0``).
        metrics: the valid metric names.
        subjects: the valid subject names, or ``None`` to accept any.
        source: where ``spec`` came from, for messages and the report.
        noun: what a subject is, for messages: ``"attack"`` (mia) or ``"subject"`` (canary).

    Returns:
        The threshold, with the metric name in its canonical spelling (``tpr@1.0%FPR`` becomes ``tpr@1%fpr``).

    Raises:
        PrivauditError: on a malformed spec, an unknown metric or subject, or a value that is not a finite number.
    """
    key, sep, raw = spec.rpartition("=")
    if not sep or not key.strip() or not raw.strip():
        raise PrivauditError(f"{source}: '{spec}' is not METRIC=VALUE or {noun.upper()}:METRIC=VALUE")
    try:
        value = float(raw)
    except ValueError as err:
        raise PrivauditError(f"{source}: '{spec}': '{raw.strip()}' is not a number") from err
    return threshold_from_key(key, value, kind=kind, metrics=metrics, subjects=subjects, source=source, noun=noun)


def threshold_from_key(
    key: str,
    limit: float,
    *,
    kind: Kind = "fail_above",
    metrics: Collection[str],
    subjects: Collection[str] | None = None,
    source: str = "",
    noun: str = "attack",
) -> Threshold:
    """Like :func:`parse_threshold`, from a key (``"loss:auc"``) and a value, as a config file's table holds them."""
    subject, _, metric = key.strip().rpartition(":")
    metric = canonical_metric(metric)
    subject = subject.strip() or None
    if metric not in metrics:
        raise PrivauditError(f"{source}: unknown metric '{metric}' in '{key}'; valid metrics: {', '.join(metrics)}")
    if subject is not None and subjects is not None and subject not in subjects:
        raise PrivauditError(f"{source}: unknown {noun} '{subject}' in '{key}'; choose from: {_listing(subjects)}")
    limit = check_limit(kind, metric, limit, where=f"{source}: '{key.strip()}'")  # ranges: privaudit.ranges
    return Threshold(kind=kind, metric=metric, limit=limit, subject=subject, source=source)


def canonical_metric(name: str) -> str:
    """Lower-case, no spaces, and TPR@FPR percentages written as :func:`tpr_metric` writes them."""
    name = "".join(name.split()).lower()
    match = _TPR.fullmatch(name)
    return tpr_metric(float(match["pct"]) / 100) if match else name


def merge_thresholds(*groups: Iterable[Threshold]) -> list[Threshold]:
    """Thresholds from several sources; a later group replaces an earlier one's threshold of the same kind and key."""
    merged: dict[tuple[str, str], Threshold] = {}
    for group in groups:
        for t in group:
            merged.pop((t.kind, t.key), None)
            merged[(t.kind, t.key)] = t
    return list(merged.values())


PER_USER = "(per user: group privacy)"
"""Ends the source of an ``epsilon_claim`` whose epsilon is the group-privacy one of ``mia --group-by``."""


def epsilon_claim(
    claimed_epsilon: float | None, *, metric: str = "epsilon_lb", source: str = "--fail-if-bound-exceeds-epsilon"
) -> Threshold:
    """The threshold of ``--fail-if-bound-exceeds-epsilon``: an epsilon lower bound <= the theoretical epsilon.

    Args:
        claimed_epsilon: the theoretical epsilon; ``None`` (no DP) gives skipped checks.
        metric: the bound to check: ``"epsilon_lb"`` (mia) or ``"one_run_epsilon_lb"`` (canaries).
        source: where the request came from, for messages.
    """
    claimed_epsilon = check_epsilon(claimed_epsilon, where="the theoretical epsilon")
    return Threshold(kind="epsilon_claim", metric=metric, limit=claimed_epsilon, source=source)


def run_gate(
    measurements: Sequence[Measurement],
    thresholds: Sequence[Threshold],
    *,
    baseline: Sequence[Measurement] | None = None,
    baseline_name: str | None = None,
    exit_zero: bool = False,
) -> GateResult:
    """Check measurements against thresholds.

    Args:
        measurements: what the run measured, from e.g. :func:`mia_measurements`.
        thresholds: from :func:`parse_threshold`, :func:`threshold_from_key` and :func:`epsilon_claim`; a
            subject-specific threshold overrides one of the same kind and metric without a subject.
        baseline: the measurements ``max_increase`` thresholds compare with.
        baseline_name: the baseline's file, for the report.
        exit_zero: report breaches but exit 0.

    Returns:
        One check per (threshold, subject): every subject with a measurement of the metric, or only the
        threshold's own subject (skipped when it measured nothing).

    Raises:
        PrivauditError: when a ``max_increase`` threshold is given without a baseline.
    """
    if baseline is None and any(t.kind == "max_increase" for t in thresholds):
        raise PrivauditError("--max-increase needs --baseline FILE (from --save-baseline or 'privaudit baseline save')")
    found = {(m.subject, m.metric): m for m in measurements}
    before = {(m.subject, m.metric): m for m in baseline or ()}
    subjects = list(dict.fromkeys(m.subject for m in measurements))
    specific = {(t.kind, t.metric, t.subject) for t in thresholds if t.subject is not None}
    checks: list[Check] = []
    for t in thresholds:
        if t.subject is not None and "*" in t.subject:
            # A slice pattern (class=*, class=*/loss): every matching slice, less those named exactly.
            matched = [s for s in subjects if _matches(s, t.subject) and (s, t.metric) in found]
            if not matched:
                checks.append(Check(t, t.subject, "skipped", None, f"{t.subject}: no slice measured {t.metric}"))
            targets = [s for s in matched if (t.kind, t.metric, s) not in specific]
        elif t.subject is not None:
            targets = [t.subject]
        else:
            # Slices are gated only when named: small slices are noisy, and "auc=0.6" means the attacks.
            measured = [s for s in subjects if (s, t.metric) in found and not is_slice_subject(s)]
            if not measured:
                checks.append(Check(t, "*", "skipped", None, f"{t.metric}: no attack or canary measured it"))
            targets = [s for s in measured if (t.kind, t.metric, s) not in specific]
        for subject in targets:
            m = found.get((subject, t.metric))
            if t.kind == "max_increase":
                checks.append(_check_increase(t, subject, m, before.get((subject, t.metric))))
            elif t.kind == "epsilon_claim":
                checks.append(_check_claim(t, subject, m))
            else:
                checks.append(_check_above(t, subject, m))
    return GateResult(tuple(thresholds), tuple(checks), exit_zero=exit_zero, baseline=baseline_name)


def _matches(subject: str, pattern: str) -> bool:
    """``class=*`` matches ``class=pay_bill`` but not ``class=pay_bill/loss``: ``*`` stops at ``/``."""
    return re.fullmatch(re.escape(pattern).replace(r"\*", "[^/]*"), subject) is not None


def _unmeasured(t: Threshold, subject: str, m: Measurement | None) -> Check:
    if m is None:
        return Check(t, subject, "skipped", None, f"{subject}: {t.metric} was not measured ('{subject}' did not run)")
    return Check(t, subject, "skipped", m, f"{subject}: {t.metric} not gated: {m.note or 'not measured'}")


def _check_above(t: Threshold, subject: str, m: Measurement | None) -> Check:
    if m is None or m.value is None:
        return _unmeasured(t, subject, m)
    if m.value > t.limit + _ABS_TOL:
        message = f"{subject}: {t.metric} = {m.describe()} is above the threshold {format_number(t.limit)} ({t.source})"
        return Check(t, subject, "failed", m, message)
    return Check(t, subject, "passed", m, f"{subject}: {t.metric} = {m.describe()} <= {format_number(t.limit)}")


def _check_increase(t: Threshold, subject: str, m: Measurement | None, old: Measurement | None) -> Check:
    if m is None or m.value is None:
        return _unmeasured(t, subject, m)
    if old is None or old.value is None:
        return Check(t, subject, "skipped", m, f"{subject}: {t.metric} not gated: the baseline has no value for it")
    rise = m.value - old.value
    text = f"{subject}: {t.metric} = {m.describe()}, baseline {format_number(old.value)} ({rise:+.4g})"
    if rise > t.limit + _ABS_TOL:
        message = f"{text} rose more than the allowed {format_number(t.limit)} ({t.source})"
        return Check(t, subject, "failed", m, message, baseline=old.value)
    return Check(t, subject, "passed", m, f"{text}, allowed increase {format_number(t.limit)}", baseline=old.value)


def _check_claim(t: Threshold, subject: str, m: Measurement | None) -> Check:
    if m is None or m.value is None:
        return _unmeasured(t, subject, m)
    if t.limit is None:
        note = "no theoretical epsilon (the model records no DP training; pass --epsilon)"
        if t.source.endswith(PER_USER):
            note = "per user, group privacy guarantees no epsilon at the audit's delta (its delta is larger)"
        return Check(t, subject, "skipped", m, f"{subject}: {m.metric} not gated: {note}")
    if m.value > t.limit + _ABS_TOL:
        if m.metric == ESTIMATE_METRIC:
            # Not a proof: the estimate holds only as far as the scores are Gaussian (privaudit.stats.gaussian_fit).
            verdict = "an estimate, not a bound: likely a DP bug or wrong privacy metadata, not proved"
        else:
            verdict = "the DP implementation has a bug or the privacy metadata is wrong"
        message = (
            f"{subject}: {m.metric} = {m.describe()} exceeds the theoretical epsilon {format_number(t.limit)}: "
            f"{verdict} ({t.source})"
        )
        return Check(t, subject, "failed", m, message)
    return Check(t, subject, "passed", m, f"{subject}: {m.metric} = {m.describe()} <= epsilon {format_number(t.limit)}")


def _listing(names: Collection[str], most: int = 12) -> str:
    """Names for a message; past ``most``, the first ones and how many there are in all."""
    names = list(names)
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[: most - 1])}, ... ({len(names)} in all)"

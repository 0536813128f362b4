"""Machine and CI formats of a gated audit: JSON, JUnit XML, SARIF 2.1.0, GitHub annotations, Markdown, and the
gate's Rich table. Reporters never compute: they render a :class:`~privaudit.gate.gate.GateResult` (and for JSON and
Markdown the :class:`~privaudit.mia.run.MiaResult` or :class:`~privaudit.canary.run.CanaryResult`) as they are.

The JSON, JUnit, SARIF and GitHub writers take only the gate, the result's own document and a file to point at, so
every gated command (mia, canary) uses them; the Markdown summary has one writer per command.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from privaudit import __version__
from privaudit.gate.gate import Check, GateResult
from privaudit.gate.measurements import canary_subject
from privaudit.mia.run import MiaResult

if TYPE_CHECKING:
    from privaudit.canary.run import CanaryResult
    from privaudit.stats.auditor import OneRunBounds

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_STATUS_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
_TITLES = {
    "auc": "ROC AUC of a membership-inference attack",
    "advantage": "membership advantage (max TPR - FPR)",
    "epsilon_lb": "empirical epsilon lower bound",
    "exposure": "canary exposure",
    "extracted": "canaries extracted",
    "one_run_epsilon_lb": "one-run empirical epsilon lower bound",
    "fdp_epsilon_lb": "one-run f-DP epsilon lower bound ((eps, delta) family)",
    "gdp_epsilon_lb": "one-run f-DP epsilon lower bound (Gaussian family; assumes a Gaussian trade-off curve)",
    "gdp_mu_lb": "one-run mu-GDP lower bound (assumes a Gaussian trade-off curve)",
    "steinke_epsilon_lb": "one-run epsilon lower bound of Steinke et al. (Pareto frontier)",
    "estimate_epsilon_lower": "lower limit of the likelihood estimate's epsilon (an estimate, not a bound)",
}


def metric_title(metric: str) -> str:
    """``"TPR at 1% FPR"`` for ``"tpr@1%fpr"``; a few words for the other metrics."""
    match = re.fullmatch(r"tpr@(.+)%fpr", metric)
    return f"TPR at {match[1]}% FPR of a membership-inference attack" if match else _TITLES.get(metric, metric)


def artifact_location(result: MiaResult | CanaryResult) -> str:
    """The file CI annotations point at: the model's ``config.json``, or the ``--scores`` file of a mia audit.

    A path inside the current directory is made relative to it (the repository root in CI), with ``/``.
    """
    model = result.model.get("path")
    path = (Path(model) / "config.json" if model else Path(result.model.get("scores") or ".")).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --- JSON --------------------------------------------------------------------------------------------------------


def report_document(result: MiaResult | CanaryResult, gate: GateResult) -> dict:
    """The JSON document (``privaudit.mia/1``, ``privaudit.canary/1``): the audit's own fields plus the ``gate``."""
    return {**result.to_dict(), "gate": gate.to_dict()}


mia_document = report_document


def to_json(result: MiaResult | CanaryResult, gate: GateResult) -> str:
    return json.dumps(report_document(result, gate), indent=2, sort_keys=True) + "\n"


# --- JUnit XML ---------------------------------------------------------------------------------------------------


def to_junit(gate: GateResult, *, suite: str, properties: dict[str, str] | None = None) -> str:
    """JUnit XML: one ``testcase`` per check, with a ``failure`` on a breach and ``skipped`` when not checkable.

    Args:
        gate: the gate's result.
        suite: the test suite's name, e.g. ``"privaudit mia fixtures/models/intent-tiny"``.
        properties: extra ``property`` elements, e.g. the model fingerprint.
    """
    counts = {
        "tests": str(len(gate.checks)),
        "failures": str(len(gate.failed)),
        "errors": "0",
        "skipped": str(len(gate.by_status("skipped"))),
    }
    root = ET.Element("testsuites", {"name": "privaudit", **counts})
    testsuite = ET.SubElement(root, "testsuite", {"name": suite, **counts})
    props = ET.SubElement(testsuite, "properties")
    for name, value in {"privaudit.version": __version__, "verdict": gate.verdict, **(properties or {})}.items():
        ET.SubElement(props, "property", {"name": name, "value": str(value)})
    for check in gate.checks:
        case = ET.SubElement(testsuite, "testcase", {"classname": f"privaudit.{check.subject}", "name": check.name})
        if check.status == "failed":
            failure = ET.SubElement(case, "failure", {"message": check.message, "type": check.threshold.kind})
            failure.text = check.message
        elif check.status == "skipped":
            ET.SubElement(case, "skipped", {"message": check.message})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# --- SARIF 2.1.0 -------------------------------------------------------------------------------------------------


def rule_id(check: Check) -> str:
    """A stable SARIF rule id per (kind, metric): ``auc-above-threshold``, ``tpr-at-1pct-fpr-increase``."""
    slug = re.sub(r"[^a-z0-9]+", "-", check.metric.replace("@", "-at-").replace("%", "pct-")).strip("-")
    suffix = {"fail_above": "above-threshold", "max_increase": "increase", "epsilon_claim": "exceeds-epsilon"}
    return f"{slug}-{suffix[check.threshold.kind]}"


def _rule(check: Check) -> dict:
    title = metric_title(check.metric)
    text = {
        "fail_above": f"The {title} is above its --fail-above threshold.",
        "max_increase": f"The {title} rose above its baseline by more than --max-increase allows.",
        "epsilon_claim": f"The {title} exceeds the theoretical epsilon: the DP guarantee cannot hold as stated.",
    }[check.threshold.kind]
    if check.threshold.kind == "epsilon_claim" and check.metric == "estimate_epsilon_lower":
        text = f"The {title} exceeds the theoretical epsilon: likely a DP bug or wrong privacy metadata (not proved)."
    return {
        "id": rule_id(check),
        "name": "".join(w.capitalize() for w in rule_id(check).split("-")),
        "shortDescription": {"text": text},
        "help": {"text": f"{text} Lower the leak (DP-SGD, more data, fewer epochs) or revisit the threshold."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["privacy", check.threshold.kind]},
    }


def to_sarif(gate: GateResult, *, location: str) -> str:
    """SARIF 2.1.0: one result per breach, at ``location`` (a path relative to the repository root)."""
    rules: dict[str, dict] = {}
    for check in gate.checks:
        rules.setdefault(rule_id(check), _rule(check))
    index = {rid: i for i, rid in enumerate(rules)}
    if Path(location).is_absolute():
        artifact = {"uri": Path(location).as_uri()}
    else:
        artifact = {"uri": quote(location), "uriBaseId": "%SRCROOT%"}
    results = []
    for check in gate.failed:
        m = check.measurement
        results.append(
            {
                "ruleId": rule_id(check),
                "ruleIndex": index[rule_id(check)],
                "level": "error",
                "message": {"text": check.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": artifact,
                            "region": {"startLine": 1},
                        }
                    }
                ],
                "properties": {
                    "subject": check.subject,
                    "metric": check.metric,
                    "value": None if m is None else m.value,
                    "low": None if m is None else m.low,
                    "high": None if m is None else m.high,
                    "limit": check.threshold.limit,
                    "baseline": check.baseline,
                },
            }
        )
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "privaudit", "version": __version__, "rules": list(rules.values())}},
                "invocations": [{"executionSuccessful": True, "exitCode": gate.exit_code}],
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


# --- GitHub workflow commands ------------------------------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(gate: GateResult, *, location: str, command: str = "mia") -> str:
    """``::error`` annotations for breaches and ``::warning`` for checks that could not be made."""
    lines = []
    for check in gate.checks:
        if check.status == "passed":
            continue
        level = "error" if check.status == "failed" else "warning"
        title = f"privaudit {command}: {check.subject} {check.name}" + (" skipped" if level == "warning" else "")
        lines.append(
            f"::{level} file={_escape_property(location)},title={_escape_property(title)}::"
            f"{_escape_data(check.message)}"
        )
    return "".join(line + "\n" for line in lines)


# --- Markdown ----------------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if low is None or high is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def markdown_gate(gate: GateResult) -> str:
    """The gate part of a PR comment: breaches and skipped checks as tables."""
    parts = []
    for status, heading in (("failed", "Breaches"), ("skipped", "Not checked")):
        checks = gate.by_status(status)
        if not checks:
            continue
        rows = ["| subject | check | value | limit | baseline | detail |", "|---|---|---:|---:|---:|---|"]
        for c in checks:
            m = c.measurement
            value = "n/a" if m is None else _interval(m.value, m.low, m.high)
            limit = "n/a" if c.threshold.limit is None else f"{c.threshold.limit:g}"
            baseline = "" if c.baseline is None else f"{c.baseline:.3f}"
            rows.append(
                f"| {_cell(c.subject)} | `{_cell(c.name)}` | {value} | {limit} | {baseline} | {_cell(c.message)} |"
            )
        parts.append(f"#### {heading}\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def to_markdown(result: MiaResult, gate: GateResult) -> str:
    """A summary fit for a pull-request comment: verdict line, per-attack metrics, breaches."""
    icon = "❌" if gate.verdict == "fail" else "✅"
    source = result.model.get("path") or result.model.get("endpoint") or result.model.get("scores")
    eps = "∞ (no DP)" if result.theoretical_epsilon is None else f"{result.theoretical_epsilon:.3f}"
    lines = [
        f"### {icon} privaudit mia: {_cell(gate.summary())}",
        "",
        f"Model `{source}`, {result.n_members} members, {result.n_non_members} non-members, "
        f"{result.n_reference_models} reference models, seed {result.seed}; theoretical ε {eps} (δ={result.delta:g}); "
        "intervals at 95%.",
        "",
    ]
    if result.users is not None:
        from privaudit.report.users import user_rows

        lines[2] = lines[2].replace(" members, ", " member users, ").replace(" non-members, ", " non-member users, ")
        lines.insert(3, "\n" + "; ".join(f"{k}: {v}" for k, v in user_rows(result)) + ".")
    fprs = [t.fpr for t in result.attacks[0].metrics.tpr_at_fpr] if result.attacks else []
    header = ["attack", "AUC", *(f"TPR@{round(f * 100, 10):g}% FPR" for f in fprs), "advantage", "ε lower bound"]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for attack in result.attacks:
        m = attack.metrics
        cells = [_cell(attack.name), _interval(m.auc.value, m.auc.low, m.auc.high)]
        cells += [_interval(t.tpr, t.low, t.high) if t.supported else "n/a (too few non-members)" for t in m.tpr_at_fpr]
        cells += [f"{m.advantage:.3f}", f"{m.epsilon_lower_bound:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    gate_part = markdown_gate(gate)
    return "\n".join(lines) + ("\n\n" + gate_part if gate_part else "") + "\n"


GAUSSIAN_NOTE = "assumes the mechanism's trade-off curve is Gaussian (mu-GDP): tighter, not a strict (ε, δ) bound"
_BOUND_TITLES = {
    "eps_delta": "f-DP, (ε, δ) family",
    "gaussian": "f-DP, Gaussian family*",
    "steinke": "Steinke et al. 2023",
}


def bound_rows(bounds: OneRunBounds) -> list[tuple[str, str, str, str]]:
    """``(analysis, ε lower bound, μ lower bound, guesses)`` per bound, as the table and the Markdown show them."""
    rows = []
    for key, bound in (("eps_delta", bounds.eps_delta), ("gaussian", bounds.gaussian), ("steinke", bounds.steinke)):
        mu = "" if bound.mu is None else f"{bound.mu:.4f}"
        side = " ('out')" if bound.side == "out" else ""
        guesses = f"{bound.correct} of {bound.guesses} right{side}" if bound.guesses else "none rejects"
        rows.append((_BOUND_TITLES[key], f"{bound.epsilon:.4f}", mu, guesses))
    return rows


def bounds_markdown(bounds: OneRunBounds) -> list[str]:
    """The bounds as Markdown table lines, with the Gaussian family's assumption as a footnote."""
    lines = ["| analysis | ε lower bound | μ lower bound | guesses |", "|---|---:|---:|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in bound_rows(bounds)]
    reach = "" if bounds.reach is None else f"Reach: ε {bounds.reach:.3f}, the most these canaries can show. "
    return [*lines, "", f"{reach}\\* {GAUSSIAN_NOTE}."]


def _bits(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def canary_markdown(result: CanaryResult, gate: GateResult) -> str:
    """A pull-request summary of a canary audit: verdict line, exposure and extraction, one-run bound, breaches."""
    icon = "❌" if gate.verdict == "fail" else "✅"
    eps = "∞ (no DP)" if result.theoretical_epsilon is None else f"{result.theoretical_epsilon:.3f}"
    inserted, controls = result.group(True), result.group(False)
    extracted = any(r.extraction is not None for r in result.rows)
    lines = [
        f"### {icon} privaudit canary: {_cell(gate.summary())}",
        "",
        f"Model `{result.model.get('path')}`, canaries `{result.model.get('canaries')}`: {len(inserted)} inserted, "
        f"{len(controls)} controls, seed {result.seed}; theoretical ε {eps} (δ={result.delta:g}).",
        "",
        "| canaries | mean exposure (bits) | max exposure (bits) | recovered by ModIvA |",
        "|---|---:|---:|---:|",
    ]
    for name, group, flag in (("inserted", inserted, True), ("controls", controls, False)):
        top = max((r.exposure for r in group if r.exposure is not None), default=None)
        recovered = f"{result.extracted(flag)} of {len(group)}" if extracted else "n/a"
        lines.append(f"| {name} | {_bits(result.mean_exposure(flag))} | {_bits(top)} | {recovered} |")
    one = result.one_run
    if one is not None:
        lines += [
            "",
            f"One-run audit: ε ≥ {one.epsilon_lower_bound:.3f} at {1 - one.p:.0%} confidence "
            f"({one.v} of {one.r} guesses right, {one.m} canaries).",
        ]
    if result.one_run_bounds is not None:
        lines += ["", *bounds_markdown(result.one_run_bounds)]
    if inserted:
        lines += ["", "| subject | canary | label | exposure (bits) | recovered |", "|---|---|---|---:|---|"]
        for i, row in enumerate(result.rows):
            if row.canary.inserted:
                x = row.extraction
                recovered = "n/a" if x is None else ("yes" if x.recovered else "no")
                lines.append(
                    f"| {canary_subject(i)} | `{_cell(row.canary.text)}` | {_cell(row.canary.label)} | "
                    f"{_bits(row.exposure)} | {recovered} |"
                )
    gate_part = markdown_gate(gate)
    return "\n".join(lines) + ("\n\n" + gate_part if gate_part else "") + "\n"


# --- Rich (terminal) ---------------------------------------------------------------------------------------------


def gate_table(gate: GateResult) -> Table:
    """One row per check: status, subject, check, measured value, limit."""
    table = Table(title="gate")
    with_baseline = any(c.threshold.kind == "max_increase" for c in gate.checks)
    for column in ("status", "subject", "check", "value [CI]", *(("baseline",) if with_baseline else ())):
        table.add_column(column, justify="right" if column in ("value [CI]", "baseline") else "left")
    for c in gate.checks:
        value = "n/a" if c.measurement is None else c.measurement.describe()
        cells = [f"[{_STATUS_STYLE[c.status]}]{c.status}[/]", escape(c.subject), escape(c.name), escape(value)]
        if with_baseline:
            cells.append("" if c.baseline is None else f"{c.baseline:.4g}")
        table.add_row(*cells)
    return table


def print_gate(gate: GateResult, console: Console) -> None:
    """The checks, each breach and skip on its own line, and the verdict."""
    if gate.checks:
        console.print(gate_table(gate))
    for c in gate.checks:
        if c.status != "passed":
            style = _STATUS_STYLE[c.status]
            console.print(f"[{style}]{c.status}:[/] {escape(c.message)}", highlight=False, soft_wrap=True)
    style = "bold red" if gate.verdict == "fail" else "bold green"
    console.print(f"[{style}]{gate.summary()}[/]", highlight=False)

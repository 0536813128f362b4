"""What every gated command (``privaudit mia``, ``privaudit canary``) does around its audit, written once.

A gated command parses its own flags, runs its own audit, and leaves the rest to this module:

- :func:`prepare_gate`, before the audit: the thresholds of the config file and of the flags, merged key by key and
  checked against the command's metrics and subjects; ``--baseline`` and ``--max-increase`` checked against each
  other, and the baseline read. A typo costs seconds, not the audit.
- :func:`finish`, after it: the gate over the audit's measurements; the report in ``--format`` on stdout or ``-o``;
  each ``--json-out``, ``--junit-out``, ``--sarif-out``, ``--markdown-out``; the human tables, on stderr when a machine
  format takes stdout; the HTML ``--report``; ``--save-baseline``; and the exit code (0 pass, 1 a breach). Errors
  raise :class:`~privaudit.errors.PrivauditError`, which the command line turns into exit code 2.

The shared flags are declared here as well (:data:`OutputFormat`, :func:`fail_above_option`, ...), so that every
gated command spells and documents them alike, and :class:`GateOptions` reads them back by name.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from privaudit.errors import PrivauditError

if TYPE_CHECKING:
    from privaudit.canary.dpaudit import DpAuditResult
    from privaudit.canary.run import CanaryResult
    from privaudit.gate.gate import GateResult, Threshold
    from privaudit.gate.measurements import Measurement
    from privaudit.mia.run import MiaResult

    AuditResult = MiaResult | CanaryResult | DpAuditResult

Progress = Callable[[str, int, int | None], None]

# --- the shared flags -------------------------------------------------------------------------------------------

OutputFormat = Annotated[
    str, typer.Option("--format", "-f", help="table, json, junit, sarif, github or markdown.", rich_help_panel="Output")
]
Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report here, not stdout.", rich_help_panel="Output")
]
FailIfBoundExceedsEpsilon = Annotated[
    bool,
    typer.Option(
        "--fail-if-bound-exceeds-epsilon",
        help="Exit 1 if an empirical epsilon lower bound exceeds the theoretical epsilon.",
        rich_help_panel="Gate",
        metavar="",  # a flag: no "<bool>" beside its name
    ),
]
# Its off switch, for a config file that turns the check on; hidden, so that at 80 columns the help keeps the flag's
# whole name (a "--x/--no-x" pair of this length squeezed the panel until Rich cut both names).
NoFailIfBoundExceedsEpsilon = Annotated[
    bool,
    typer.Option(
        "--no-fail-if-bound-exceeds-epsilon",
        hidden=True,
        help="Turn off fail_if_bound_exceeds_epsilon set in the config file.",
    ),
]
FailIfEstimateExceedsEpsilon = Annotated[
    bool,
    typer.Option(
        "--fail-if-estimate-exceeds-epsilon",
        help="Exit 1 if the likelihood ESTIMATE's lower limit exceeds the theoretical epsilon. Opt-in: it gates on an "
        "estimate (an equal-variance Gaussian fit of the scores), not a bound; it can flag what few canaries cannot "
        "prove, and it is only as right as the scores are Gaussian.",
        rich_help_panel="Gate",
        metavar="",
    ),
]
NoFailIfEstimateExceedsEpsilon = Annotated[
    bool,
    typer.Option(
        "--no-fail-if-estimate-exceeds-epsilon",
        hidden=True,
        help="Turn off fail_if_estimate_exceeds_epsilon set in the config file.",
    ),
]
Baseline = Annotated[
    Path | None,
    typer.Option(help="Compare with this baseline (see 'privaudit baseline save').", rich_help_panel="Gate"),
]
SaveBaseline = Annotated[
    Path | None, typer.Option(help="Save this audit's metrics as a baseline.", rich_help_panel="Gate")
]
ExitZero = Annotated[
    bool, typer.Option("--exit-zero", help="Report breaches but exit 0 (errors still exit 2).", rich_help_panel="Gate")
]
JsonOut = Annotated[Path | None, typer.Option(help="Also write the JSON report here.", rich_help_panel="Output")]
JunitOut = Annotated[
    Path | None, typer.Option(help="Also write JUnit XML (one test case per check) here.", rich_help_panel="Output")
]
SarifOut = Annotated[
    Path | None, typer.Option(help="Also write SARIF 2.1.0 (one result per breach) here.", rich_help_panel="Output")
]
MarkdownOut = Annotated[
    Path | None, typer.Option(help="Also write a Markdown summary (PR comment) here.", rich_help_panel="Output")
]


def fail_above_option(*, metavar: str, metrics: str) -> Any:
    """The repeatable ``--fail-above [SUBJECT:]METRIC=VALUE`` option; ``metrics`` names them in its help."""
    return typer.Option(
        "--fail-above",
        metavar=metavar,
        help=f"Exit 1 if a metric is above VALUE (repeatable): {metrics}.",
        rich_help_panel="Gate",
    )


def max_increase_option(*, metavar: str) -> Any:
    """The repeatable ``--max-increase [SUBJECT:]METRIC=VALUE`` option."""
    return typer.Option(
        "--max-increase",
        metavar=metavar,
        help="With --baseline: exit 1 if a metric rose by more than VALUE (repeatable).",
        rich_help_panel="Gate",
    )


@dataclass(frozen=True)
class GateOptions:
    """The gating and reporting flags of a gated command, as given (after the config file's defaults).

    Attributes:
        output_format: ``--format``: one of :data:`privaudit.config.REPORT_FORMATS`.
        output: ``-o``: where the ``--format`` report goes instead of stdout.
        fail_above: ``--fail-above`` specs, e.g. ``["auc=0.6"]``.
        max_increase: ``--max-increase`` specs; they need ``baseline``.
        fail_if_bound_exceeds_epsilon: check the command's epsilon lower bound against the theoretical epsilon.
        fail_if_estimate_exceeds_epsilon: check the likelihood estimate's lower limit (not a bound) against the
            theoretical epsilon (``dp-audit`` only).
        baseline: ``--baseline FILE``.
        save_baseline: ``--save-baseline FILE``.
        exit_zero: report breaches but exit 0.
        json_out: also write the JSON report here; likewise ``junit_out``, ``sarif_out``, ``markdown_out``.
        report: also write the HTML report here.
    """

    output_format: str = "table"
    output: Path | None = None
    fail_above: Sequence[str] = ()
    max_increase: Sequence[str] = ()
    fail_if_bound_exceeds_epsilon: bool = False
    fail_if_estimate_exceeds_epsilon: bool = False
    baseline: Path | None = None
    save_baseline: Path | None = None
    exit_zero: bool = False
    json_out: Path | None = None
    junit_out: Path | None = None
    sarif_out: Path | None = None
    markdown_out: Path | None = None
    report: Path | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GateOptions:
        """The options from a command's parameters by name (``ctx.params``), which every gated command declares."""
        # A command without an HTML report (dp-audit) has no --report: such a flag keeps its default.
        values = {f.name: params.get(f.name, f.default) for f in fields(cls)}
        values["fail_above"] = tuple(values["fail_above"] or ())
        values["max_increase"] = tuple(values["max_increase"] or ())
        if params.get("no_fail_if_bound_exceeds_epsilon"):
            values["fail_if_bound_exceeds_epsilon"] = False
        if params.get("no_fail_if_estimate_exceeds_epsilon"):
            values["fail_if_estimate_exceeds_epsilon"] = False
        return cls(**values)

    def sinks(self) -> Iterator[tuple[str, Path]]:
        """``(format, path)`` of each ``--*-out`` report asked for."""
        for kind in ("json", "junit", "sarif", "markdown"):
            path = getattr(self, f"{kind}_out")
            if path is not None:
                yield kind, path


@dataclass(frozen=True)
class GatePlan:
    """What the gate will check, settled before the audit runs.

    Attributes:
        options: the flags.
        thresholds: from the config file and the flags, merged (the epsilon claim comes with the result).
        baseline: the measurements of ``--baseline``, or ``None``.
        bound_source: where ``fail_if_bound_exceeds_epsilon`` came from (flag or config key); ``None`` when off.
        estimate_source: likewise ``fail_if_estimate_exceeds_epsilon``.
    """

    options: GateOptions
    thresholds: tuple[Threshold, ...]
    baseline: list[Measurement] | None
    bound_source: str | None
    estimate_source: str | None = None


@dataclass(frozen=True)
class AuditReport:
    """A finished audit, and how its command renders it.

    Attributes:
        command: ``"mia"``, ``"canary"`` or ``"dp-audit"``, for report titles.
        schema: the result document's schema, e.g. ``"privaudit.mia/1"``, recorded in a saved baseline.
        result: the audit's result: its ``to_dict()`` is the JSON report, its ``model`` names the audited files.
        measurements: what the gate checks (:func:`privaudit.gate.measurements.mia_measurements`, ``canary_measurements``).
        bound_metric: the epsilon lower bound that ``--fail-if-bound-exceeds-epsilon`` compares with the theoretical
            epsilon: ``"epsilon_lb"`` or ``"one_run_epsilon_lb"``.
        print_result: prints the result's tables on a console.
        markdown: renders the pull-request summary of the result and the gate.
        write_html: writes the HTML report of the result and the gate to a file (``write_html(result, path,
            gate=gate)``); ``None`` for a command without ``--report``.
        print_summary: prints the verdict and the headline numbers before the tables (``print_summary(result, gate,
            console)``); ``None``: the tables come first.
    """

    command: str
    schema: str
    result: AuditResult
    measurements: Sequence[Measurement]
    bound_metric: str
    print_result: Callable[[Any, Console], None]
    markdown: Callable[[Any, GateResult], str]
    write_html: Callable[..., None] | None = None
    print_summary: Callable[[Any, GateResult, Console], None] | None = None


def prepare_gate(
    ctx: typer.Context,
    options: GateOptions,
    *,
    metrics: Collection[str],
    subjects: Collection[str],
    noun: str = "attack",
) -> GatePlan:
    """Check the gate's flags and read its files, before the audit runs.

    Args:
        ctx: the command's context: its config file (``ctx.meta``) and where each flag's value came from.
        options: the flags.
        metrics: the metric names the command measures.
        subjects: the subjects a ``SUBJECT:METRIC`` threshold may name.
        noun: what a subject is, for messages (``"attack"``).

    Raises:
        PrivauditError: an unknown format, a malformed or unknown threshold, ``--baseline`` without
            ``--max-increase`` or the reverse, an unreadable baseline.
    """
    from privaudit.config import META_KEY, CommandConfig, value_source
    from privaudit.config_keys import REPORT_FORMATS
    from privaudit.gate.baseline import load_baseline
    from privaudit.gate.gate import merge_thresholds, parse_threshold, threshold_from_key

    if options.output_format not in REPORT_FORMATS:
        raise PrivauditError(f"--format '{options.output_format}' is unknown; use one of {', '.join(REPORT_FORMATS)}")
    file_config: CommandConfig = ctx.meta.get(META_KEY) or CommandConfig()
    known = {"metrics": metrics, "subjects": subjects, "noun": noun}
    from_file = [
        threshold_from_key(key, value, kind=kind, source=f"{file_config.source}.{kind}", **known)
        for kind in ("fail_above", "max_increase")
        for key, value in getattr(file_config, kind).items()
    ]
    from_flags = [parse_threshold(s, source="--fail-above", **known) for s in options.fail_above]
    from_flags += [
        parse_threshold(s, kind="max_increase", source="--max-increase", **known) for s in options.max_increase
    ]
    thresholds = merge_thresholds(from_file, from_flags)
    wants_increase = any(t.kind == "max_increase" for t in thresholds)
    if wants_increase and options.baseline is None:
        raise PrivauditError("--max-increase needs --baseline FILE (from --save-baseline or 'privaudit baseline save')")
    if options.baseline is not None and not wants_increase:
        raise PrivauditError("--baseline needs at least one --max-increase METRIC=VALUE (e.g. auc=0.02)")
    bound_source = None
    if options.fail_if_bound_exceeds_epsilon:
        bound_source = value_source(ctx, "fail_if_bound_exceeds_epsilon", "--fail-if-bound-exceeds-epsilon")
    estimate_source = None
    if options.fail_if_estimate_exceeds_epsilon:
        estimate_source = value_source(ctx, "fail_if_estimate_exceeds_epsilon", "--fail-if-estimate-exceeds-epsilon")
    return GatePlan(
        options=options,
        thresholds=tuple(thresholds),
        baseline=load_baseline(options.baseline) if options.baseline is not None else None,
        bound_source=bound_source,
        estimate_source=estimate_source,
    )


@contextmanager
def stage_progress(*, ignore: str | None = None) -> Iterator[Progress]:
    """A ``progress(stage, done, total)`` callback showing one bar per stage on stderr, for ``run_mia``/``run_canary``.

    Args:
        ignore: stages starting with this are not shown (e.g. ``"attack "``: too quick to be worth a bar).
    """
    from privaudit.cli.console import progress_bar

    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if ignore is not None and stage.startswith(ignore):
                return
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield on_progress


def finish(plan: GatePlan, audit: AuditReport) -> None:
    """Gate the audit, write every report asked for, save the baseline, and exit 1 on a breach.

    Raises:
        typer.Exit: with code 1 when a check failed (and not ``--exit-zero``).
        PrivauditError: when a report or the baseline cannot be written.
    """
    from privaudit.cli.console import err_console, write_text
    from privaudit.gate.baseline import baseline_document
    from privaudit.gate.gate import PER_USER, epsilon_claim, run_gate
    from privaudit.gate.measurements import ESTIMATE_METRIC
    from privaudit.report import formats

    options, result = plan.options, audit.result
    thresholds = list(plan.thresholds)
    if plan.bound_source is not None:
        # Per user (mia --group-by) the bounds answer to the group-privacy epsilon, not the record-level one.
        claimed, source = result.theoretical_epsilon, plan.bound_source
        if getattr(result, "users", None) is not None:
            claimed, source = result.claimed_epsilon(), f"{source} {PER_USER}"
        claim = epsilon_claim(claimed, metric=audit.bound_metric, source=source)
        thresholds.append(claim)
    if plan.estimate_source is not None:
        # Opt-in, and named apart from the bound's check: the estimate's lower limit is not a bound.
        thresholds.append(
            epsilon_claim(result.theoretical_epsilon, metric=ESTIMATE_METRIC, source=plan.estimate_source)
        )
    gate = run_gate(
        audit.measurements,
        thresholds,
        baseline=plan.baseline,
        baseline_name=None if options.baseline is None else str(options.baseline),
        exit_zero=options.exit_zero,
    )
    location = formats.artifact_location(result)
    suite = f"privaudit {audit.command} {result.model.get('path') or result.model.get('scores')}"
    properties = {"model.fingerprint": result.model.get("fingerprint") or ""}
    render = {
        "json": lambda: formats.to_json(result, gate),
        "junit": lambda: formats.to_junit(gate, suite=suite, properties=properties),
        "sarif": lambda: formats.to_sarif(gate, location=location),
        "github": lambda: formats.to_github(gate, location=location, command=audit.command),
        "markdown": lambda: audit.markdown(result, gate),
    }
    if options.output_format != "table":
        write_text(render[options.output_format](), options.output)
    elif options.output is not None:
        with open(os.devnull, "w") as devnull:
            file_console = Console(record=True, width=160, file=devnull)
            if audit.print_summary is not None:
                audit.print_summary(result, gate, file_console)
            audit.print_result(result, file_console)
            formats.print_gate(gate, file_console)
            write_text(file_console.export_text(), options.output)
    for kind, path in options.sinks():
        write_text(render[kind](), path)
    # Human output goes to stderr when a machine format takes stdout.
    human = Console(stderr=options.output_format != "table" and options.output is None)
    if audit.print_summary is not None:
        audit.print_summary(result, gate, human)
    audit.print_result(result, human)
    formats.print_gate(gate, human)
    if options.report is not None and audit.write_html is not None:
        audit.write_html(result, options.report, gate=gate)
        err_console.print(f"HTML report written to {options.report}")
    if options.save_baseline is not None:
        origin = {"schema": audit.schema, "model": result.model, "seed": result.seed}
        document = baseline_document(audit.measurements, source=origin)
        write_text(json.dumps(document, indent=2) + "\n", options.save_baseline)
        err_console.print(f"baseline written to {options.save_baseline}")
    if gate.exit_code:
        raise typer.Exit(gate.exit_code)


def lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported when first called: the HTML writers load matplotlib, which only ``--report`` needs."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call

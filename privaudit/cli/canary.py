"""The ``privaudit canary`` command (registered on the main app), gated like ``privaudit mia``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privaudit.cli.app import app
from privaudit.cli.endpoint import (
    Concurrency,
    Endpoint,
    EndpointBatch,
    EndpointCache,
    EndpointFormat,
    EndpointLabels,
    EndpointRetries,
    EndpointTimeout,
    Header,
    Insecure,
    MaxQueries,
)
from privaudit.cli.options import Device, Precision
from privaudit.cli.output import (
    Baseline,
    ExitZero,
    FailIfBoundExceedsEpsilon,
    JsonOut,
    JunitOut,
    MarkdownOut,
    NoFailIfBoundExceedsEpsilon,
    Output,
    OutputFormat,
    SarifOut,
    SaveBaseline,
    fail_above_option,
    max_increase_option,
)
from privaudit.config import config_option
from privaudit.errors import PrivauditError


@app.command()
def canary(
    ctx: typer.Context,
    model_dir: Annotated[Path | None, typer.Argument(help="The audited model directory (or --endpoint URL).")] = None,
    canaries: Annotated[
        Path | None,
        typer.Option(
            "--canaries",
            "-c",
            help="Canary file (JSONL) from 'privaudit train --canaries-out'.",
            rich_help_panel="Data",
        ),
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(
            "--attack",
            "-a",
            help="Comma-separated extraction attacks, or 'all' (see 'privaudit attacks'); default: exposure,modiva.",
            rich_help_panel="Attacks",
        ),
    ] = None,
    attack_option: Annotated[
        list[str] | None,
        typer.Option(
            "--attack-option",
            metavar="ATTACK:PARAM=VALUE",
            help="Set an extraction attack's parameter (repeatable), e.g. modiva:steps=100, modiva:exact_budget=0, "
            "exposure:sample=2000; wins over --steps, --restarts and --sample.",
            rich_help_panel="Attacks",
        ),
    ] = None,
    exposure: Annotated[
        bool,
        typer.Option(
            help="Rank each secret among all candidates (Secret Sharer); --no-exposure drops 'exposure'.",
            rich_help_panel="Attacks",
        ),
    ] = True,
    extract: Annotated[
        bool,
        typer.Option(
            help="White-box ModIvA extraction of each secret; --no-extract drops 'modiva'.", rich_help_panel="Attacks"
        ),
    ] = True,
    one_run: Annotated[
        bool,
        typer.Option(
            "--one-run/--no-one-run",
            help="One-run epsilon audit (Steinke et al. 2023) on the audit canaries.",
            rich_help_panel="Attacks",
        ),
    ] = False,
    sample: Annotated[
        int | None,
        typer.Option(min=100, help="Sample N candidates and extrapolate, for spaces over 1e6.", rich_help_panel="Data"),
    ] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(help="Theoretical epsilon (default: from privaudit.json).", rich_help_panel="Privacy claim"),
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option(help="Delta of the one-run bound (default: the model's).", rich_help_panel="Privacy claim"),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of sampling and ModIvA restarts.", rich_help_panel="Privacy claim")
    ] = 0,
    steps: Annotated[int, typer.Option(min=1, help="ModIvA optimisation steps.", rich_help_panel="Attacks")] = 300,
    restarts: Annotated[
        int, typer.Option(min=1, help="ModIvA random restarts (run as one batch).", rich_help_panel="Attacks")
    ] = 16,
    output_format: OutputFormat = "table",
    output: Output = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report.", rich_help_panel="Output")
    ] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickled weights (trust them first).", rich_help_panel="Data")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Candidates per forward pass.", rich_help_panel="Data")] = 512,
    device: Device = "auto",
    precision: Precision = "fp32",
    fail_above: Annotated[
        list[str] | None,
        fail_above_option(
            metavar="[SUBJECT:]METRIC=VALUE",
            metrics="exposure (bits), extracted (secrets recovered), one_run_epsilon_lb; "
            "SUBJECT: canaries (all inserted), canary:I (one, by its index in the JSON report), one-run",
        ),
    ] = None,
    fail_if_bound_exceeds_epsilon: FailIfBoundExceedsEpsilon = False,
    no_fail_if_bound_exceeds_epsilon: NoFailIfBoundExceedsEpsilon = False,
    baseline: Baseline = None,
    max_increase: Annotated[list[str] | None, max_increase_option(metavar="[SUBJECT:]METRIC=VALUE")] = None,
    save_baseline: SaveBaseline = None,
    exit_zero: ExitZero = False,
    json_out: JsonOut = None,
    junit_out: JunitOut = None,
    sarif_out: SarifOut = None,
    markdown_out: MarkdownOut = None,
    endpoint: Endpoint = None,
    endpoint_format: EndpointFormat = "v2",
    endpoint_labels: EndpointLabels = None,
    endpoint_batch: EndpointBatch = 256,
    concurrency: Concurrency = 4,
    endpoint_timeout: EndpointTimeout = 30.0,
    endpoint_retries: EndpointRetries = 5,
    max_queries: MaxQueries = None,
    header: Header = None,
    insecure: Insecure = False,
    endpoint_cache: EndpointCache = None,
    config: Annotated[Path | None, config_option("canary")] = None,
) -> None:
    """Canary extraction: can an attacker read planted secrets back?

    Reports each secret's exposure (log2 of the candidate space minus log2 of its rank), whether ModIvA rebuilds
    it from the weights (within modiva:exact_budget, default 100000 secrets, its guess is the lowest-loss secret of
    the whole space, its search's own guess beside), and with --one-run an epsilon lower bound from a single
    training run. --attack picks the
    extraction attacks (built-in or plugins); --no-exposure and --no-extract take exposure and modiva out of the pick
    (naming one in --attack and turning it off exits 2). Example:

        privaudit canary fixtures/models/intent-tiny \\
            -c fixtures/models/intent-tiny.canaries.jsonl --one-run

    As a CI gate (exit 0 pass, 1 a threshold breached, 2 the audit could not complete):

        privaudit canary MODEL -c CANARIES --one-run \\
            --fail-above exposure=10 --fail-above extracted=0 \\
            --fail-if-bound-exceeds-epsilon \\
            --format github --sarif-out privaudit.sarif

    Through an endpoint (exposure and one-run only: ModIvA is white-box):

        privaudit canary --endpoint http://localhost:8080/v2/models/intent \\
            -c fixtures/models/intent-tiny.canaries.jsonl --no-extract

    Defaults come from \\[tool.privaudit.canary] in pyproject.toml or \\[canary] in privaudit.toml; flags override them.
    """
    from privaudit.canary.canaries import read_canaries
    from privaudit.canary.run import SCHEMA, CanaryRequest, run_canary
    from privaudit.cli.output import AuditReport, GateOptions, finish, lazy, prepare_gate, stage_progress
    from privaudit.gate.measurements import CANARY_METRICS, canary_measurements, canary_subjects
    from privaudit.report import formats
    from privaudit.report.canary_table import print_canary

    # The subjects come from the canary file: reading it first also finds a missing or broken file in milliseconds.
    # The gate's and the reports' flags (--format ... --save-baseline, --report) are read by name from ctx.params.
    if canaries is None:
        raise PrivauditError("give the canary file with --canaries FILE (-c)")
    from privaudit.endpoint.client import endpoint_from_flags

    remote = endpoint_from_flags(ctx.params)
    plan = prepare_gate(
        ctx,
        GateOptions.from_params(ctx.params),
        metrics=CANARY_METRICS,
        subjects=canary_subjects(read_canaries(canaries)),
        noun="subject",
    )
    request = CanaryRequest(
        model_dir=model_dir,
        canaries=canaries,
        exposure=exposure,
        extract=extract,
        one_run=one_run,
        sample=sample,
        seed=seed,
        epsilon=epsilon,
        delta=delta,
        allow_pickle=allow_pickle,
        batch_size=batch_size,
        modiva_steps=steps,
        modiva_restarts=restarts,
        attacks=attack,
        attack_options=tuple(attack_option or ()),
        endpoint=remote,
        endpoint_cache=endpoint_cache,
        device=device,
        precision=precision,
    )
    with stage_progress() as on_progress:
        result = run_canary(request, progress=on_progress)
    audit = AuditReport(
        command="canary",
        schema=SCHEMA,
        result=result,
        measurements=canary_measurements(result),
        bound_metric="one_run_epsilon_lb",
        print_result=print_canary,
        markdown=formats.canary_markdown,
        write_html=lazy("privaudit.report.canary_html", "write_canary_html"),
    )
    finish(plan, audit)

"""The ``privaudit dp-audit`` command (registered on the main app), gated like ``privaudit mia``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privaudit.cli.app import app
from privaudit.cli.output import (
    Baseline,
    ExitZero,
    FailIfBoundExceedsEpsilon,
    FailIfEstimateExceedsEpsilon,
    JsonOut,
    JunitOut,
    MarkdownOut,
    NoFailIfBoundExceedsEpsilon,
    NoFailIfEstimateExceedsEpsilon,
    Output,
    OutputFormat,
    SarifOut,
    SaveBaseline,
    fail_above_option,
    max_increase_option,
)
from privaudit.config import config_option


@app.command("dp-audit")
def dp_audit(
    ctx: typer.Context,
    model_dir: Annotated[
        Path | None,
        typer.Argument(
            help="The audited model directory, with --canaries (or give --scores instead); optional for gradient "
            "canaries, whose record is the audit (the Opacus hook of privaudit.integrations writes no model)."
        ),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(
            help='Canary scores (JSONL), one {"score": S, "inserted": 0|1} a line; higher means "in".',
            rich_help_panel="Data",
        ),
    ] = None,
    canaries: Annotated[
        Path | None,
        typer.Option(
            "--canaries",
            "-c",
            help="With MODEL_DIR: the canary file of 'privaudit train --audit-canaries M' (scored by each "
            "canary's negative loss), a gradient-canary file, or the secret file of 'privaudit plant'.",
            rich_help_panel="Data",
        ),
    ] = None,
    canary_kind: Annotated[
        str,
        typer.Option(
            help="Which canaries of --canaries to audit: audit (input-space, scored by negative loss), gradient "
            "(white-box gradient canaries), data (privaudit plant's), or auto: data canaries when the file holds "
            "them, else the gradient ones when it has any, else the audit ones.",
            rich_help_panel="Data",
        ),
    ] = "auto",
    base: Annotated[
        Path | None,
        typer.Option(
            help="With data canaries (privaudit plant): the base model MODEL_DIR was fine-tuned from. Scores each "
            "canary white-box, by how far its own embedding rows moved from the base along its loss gradient; "
            "without --base, by its negative loss (black-box, weaker).",
            rich_help_panel="Data",
        ),
    ] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickled weights (trust them first).", rich_help_panel="Data")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Canary texts per forward pass.", rich_help_panel="Data")
    ] = 512,
    epsilon: Annotated[
        float | None,
        typer.Option(help="Theoretical epsilon (default: the model's privaudit.json).", rich_help_panel="Analysis"),
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option(help="Delta of the bounds (default: the model's, else 1e-5).", rich_help_panel="Analysis"),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            help="Significance in (0, 0.5): the bounds hold with confidence 1 - alpha (Bonferroni over the "
            "thresholds tested).",
            rich_help_panel="Analysis",
        ),
    ] = 0.05,
    one_sided: Annotated[
        bool,
        typer.Option(
            "--one-sided/--two-sided",
            help="Guess only 'in' above each threshold, or also 'out' below it (twice the rules, each at half the "
            "level).",
            rich_help_panel="Analysis",
        ),
    ] = True,
    output_format: OutputFormat = "table",
    output: Output = None,
    fail_above: Annotated[
        list[str] | None,
        fail_above_option(
            metavar="METRIC=VALUE",
            metrics="fdp_epsilon_lb (f-DP, (eps, delta) family), gdp_epsilon_lb and gdp_mu_lb (f-DP, Gaussian "
            "family), steinke_epsilon_lb; estimate_epsilon_lower (the estimate's lower limit, not a bound)",
        ),
    ] = None,
    fail_if_bound_exceeds_epsilon: FailIfBoundExceedsEpsilon = False,
    no_fail_if_bound_exceeds_epsilon: NoFailIfBoundExceedsEpsilon = False,
    fail_if_estimate_exceeds_epsilon: FailIfEstimateExceedsEpsilon = False,
    no_fail_if_estimate_exceeds_epsilon: NoFailIfEstimateExceedsEpsilon = False,
    baseline: Baseline = None,
    max_increase: Annotated[list[str] | None, max_increase_option(metavar="METRIC=VALUE")] = None,
    save_baseline: SaveBaseline = None,
    exit_zero: ExitZero = False,
    json_out: JsonOut = None,
    junit_out: JunitOut = None,
    sarif_out: SarifOut = None,
    markdown_out: MarkdownOut = None,
    config: Annotated[Path | None, config_option("dp_audit")] = None,
) -> None:
    """One-run DP audit: epsilon lower bounds from canaries inserted with probability 1/2 each.

    Guesses "in" for the top-scoring canaries at every threshold of the score frontier and reports, beside the
    theoretical epsilon, three lower bounds at confidence 1 - alpha: f-DP with the (eps, delta) family (a strict
    bound, the one --fail-if-bound-exceeds-epsilon checks), f-DP with the Gaussian family (tighter, but it assumes a
    Gaussian trade-off curve) and Steinke et al. (2023). Beside them, a likelihood estimate (an equal-variance Gaussian
    fit of the scores as mu-GDP, with its lower limit): an estimate, not a bound, gated only on request
    (--fail-if-estimate-exceeds-epsilon, for few canaries, whose strict bound cannot reach the claim). Example:

        privaudit dp-audit --scores canary-scores.jsonl --epsilon 8

    On the audit canaries of 'privaudit train --audit-canaries M', as a CI gate (exit 0 pass, 1 a threshold
    breached, 2 the audit could not complete):

        privaudit dp-audit model -c model.canaries.jsonl \\
            --fail-if-bound-exceeds-epsilon --format github

    On the gradient canaries that privaudit.integrations.opacus.GradientCanaries recorded in your own Opacus loop:

        privaudit dp-audit -c run.canaries.jsonl --epsilon 8 \\
            --fail-if-bound-exceeds-epsilon

    On a model you trained yourself on the output of 'privaudit plant', from the base you fine-tuned:

        privaudit dp-audit my-model --base bert-base \\
            -c planted/secret/canaries.jsonl --epsilon 8

    M canaries can show at most about ln M: the report prints this reach (2.46 for 100 canaries at the defaults), and
    a claim above it cannot fail the strict bound's gate. To flag a pipeline whose estimate is far above its claim
    (an estimate, not a proof), add --fail-if-estimate-exceeds-epsilon.

    Defaults come from \\[tool.privaudit.dp-audit] in pyproject.toml or \\[dp-audit] in privaudit.toml; flags
    override them.
    """
    from privaudit.canary.dpaudit import SCHEMA, DpAuditRequest, run_dp_audit
    from privaudit.cli.output import AuditReport, GateOptions, finish, prepare_gate, stage_progress
    from privaudit.gate.measurements import DP_AUDIT_METRICS, ONE_RUN, dp_audit_measurements
    from privaudit.report.dpaudit_table import dp_audit_markdown, print_dp_audit

    # The gate's and the reports' flags (--format ... --save-baseline) are read by name from ctx.params.
    plan = prepare_gate(
        ctx, GateOptions.from_params(ctx.params), metrics=DP_AUDIT_METRICS, subjects=[ONE_RUN], noun="subject"
    )
    request = DpAuditRequest(
        scores=scores,
        model_dir=model_dir,
        canaries=canaries,
        canary_kind=canary_kind,
        base=base,
        epsilon=epsilon,
        delta=delta,
        alpha=alpha,
        one_sided=one_sided,
        allow_pickle=allow_pickle,
        batch_size=batch_size,
    )
    with stage_progress() as on_progress:
        result = run_dp_audit(request, progress=on_progress)
    audit = AuditReport(
        command="dp-audit",
        schema=SCHEMA,
        result=result,
        measurements=dp_audit_measurements(result),
        bound_metric="fdp_epsilon_lb",
        print_result=print_dp_audit,
        markdown=dp_audit_markdown,
    )
    finish(plan, audit)

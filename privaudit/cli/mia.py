"""``privaudit mia`` and ``privaudit attacks``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
from privaudit.cli.options import CpusPerJob, Device, Executor, GpusPerJob, MaxRetries, Precision, RayAddress, Workers
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


@app.command()
def mia(
    ctx: typer.Context,
    model_dir: Annotated[Path | None, typer.Argument(help="The audited model directory (safetensors).")] = None,
    members: Annotated[Path | None, typer.Option(help="Training examples (JSONL/CSV).", rich_help_panel="Data")] = None,
    non_members: Annotated[
        Path | None, typer.Option(help="Examples not trained on, same distribution.", rich_help_panel="Data")
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(
            "--attack",
            "-a",
            help="Comma-separated attacks, or 'all' (see 'privaudit attacks').",
            rich_help_panel="Attacks",
        ),
    ] = None,
    attack_option: Annotated[
        list[str] | None,
        typer.Option(
            "--attack-option",
            metavar="ATTACK:PARAM=VALUE",
            help="Set an attack's parameter (repeatable), e.g. rmia:a=0.5, rmia:gamma=2, rmia:temperature=2 "
            "(RMIA's a and softmax temperature are tuned on the reference models when not set), "
            "lira-offline:fixed_variance=false; 'privaudit attacks' lists each attack's parameters.",
            rich_help_panel="Attacks",
        ),
    ] = None,
    population: Annotated[
        Path | None,
        typer.Option(help="More non-members: train reference models and RMIA's z-samples.", rich_help_panel="Data"),
    ] = None,
    reference_models: Annotated[
        int,
        typer.Option(
            min=0,
            help="Reference models to train (cached) for reference-loss, LiRA, RMIA.",
            rich_help_panel="Reference models",
        ),
    ] = 0,
    reference_dir: Annotated[
        list[Path] | None,
        typer.Option(
            help="A reference model already trained without the audited examples (repeatable): used instead of "
            "training any (offline attacks only).",
            rich_help_panel="Reference models",
        ),
    ] = None,
    train_config: Annotated[
        Path | None,
        typer.Option(
            help="Training recipe (privaudit.json) for reference models, if not the model's.",
            rich_help_panel="Reference models",
        ),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(help="Audit precomputed logits or scores instead of a model (see docs).", rich_help_panel="Data"),
    ] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(
            help="Theoretical epsilon (default: from the model's privaudit.json).", rich_help_panel="Privacy claim"
        ),
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option(help="Delta of the bounds (default: the model's, else 1e-5).", rich_help_panel="Privacy claim"),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed: reference models, bootstrap, splits. Same seed, same numbers.", rich_help_panel="Privacy claim"
        ),
    ] = 0,
    slice_kind: Annotated[
        list[str] | None,
        typer.Option(
            "--slice",
            metavar="KIND",
            help="Also measure every attack per slice (repeatable): class (by true label) or correctness (the "
            "model's argmax right or wrong). Gate a slice as class=NAME\\[/ATTACK]:METRIC=VALUE.",
            rich_help_panel="Slices",
        ),
    ] = None,
    slice_min: Annotated[
        int,
        typer.Option(
            min=2,
            help="Members and non-members a slice needs, each, to be measured; a smaller one is marked and "
            "skipped by the gate.",
            rich_help_panel="Slices",
        ),
    ] = 20,
    group_by: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Audit users, not records: FIELD of --members/--non-members/--population names each record's owner "
            "(e.g. user_id). A member user has all its records in the training set, a non-member user none (a user "
            "on both sides: exit 2). Every metric, slice, gate and report is then per user; reference models hold "
            "whole users out.",
            rich_help_panel="Users",
        ),
    ] = None,
    group_aggregate: Annotated[
        str,
        typer.Option(
            metavar="HOW",
            help="With --group-by, how a user's record scores become one: mean, max, logsumexp or top-k-mean (mean "
            "of the 3 highest). auto: the one that best attacks the reference models' population users (mean "
            "without reference models trained here).",
            rich_help_panel="Users",
        ),
    ] = "auto",
    output_format: OutputFormat = "table",
    output: Output = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained HTML report with ROC curves.", rich_help_panel="Output"),
    ] = None,
    per_example: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write one JSON line per audited example: its file and index, text hash (and text), label, "
            "membership, every attack's score and flag FPR (docs/schema-per-example.json).",
            rich_help_panel="Output",
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            min=0,
            help="List the N most exposed members (strongest attack) in the JSON and HTML reports; 0: none.",
            rich_help_panel="Output",
        ),
    ] = 20,
    redact_texts: Annotated[
        bool,
        typer.Option(
            "--redact-texts",
            help="Write no audited text into any output, only its SHA-256.",
            rich_help_panel="Output",
        ),
    ] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Load pickled weights (runs code from the file: trust it first).",
            rich_help_panel="Data",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.", rich_help_panel="Data")] = 128,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Reference-model cache (default .cache/privaudit).", rich_help_panel="Reference models"),
    ] = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    executor: Executor = "local",
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_job: CpusPerJob = 1,
    gpus_per_job: GpusPerJob = 0.0,
    max_retries: MaxRetries = 3,
    fail_above: Annotated[
        list[str] | None,
        fail_above_option(metavar="[ATTACK:]METRIC=VALUE", metrics="auc, advantage, epsilon_lb, tpr@1%fpr, ..."),
    ] = None,
    fail_if_bound_exceeds_epsilon: FailIfBoundExceedsEpsilon = False,
    no_fail_if_bound_exceeds_epsilon: NoFailIfBoundExceedsEpsilon = False,
    baseline: Baseline = None,
    max_increase: Annotated[list[str] | None, max_increase_option(metavar="[ATTACK:]METRIC=VALUE")] = None,
    save_baseline: SaveBaseline = None,
    exit_zero: ExitZero = False,
    json_out: JsonOut = None,
    junit_out: JunitOut = None,
    sarif_out: SarifOut = None,
    markdown_out: MarkdownOut = None,
    endpoint: Endpoint = None,
    endpoint_format: EndpointFormat = "v2",
    endpoint_labels: EndpointLabels = None,
    endpoint_batch: EndpointBatch = 32,
    concurrency: Concurrency = 4,
    endpoint_timeout: EndpointTimeout = 30.0,
    endpoint_retries: EndpointRetries = 5,
    max_queries: MaxQueries = None,
    header: Header = None,
    insecure: Insecure = False,
    endpoint_cache: EndpointCache = None,
    config: Annotated[Path | None, config_option("mia")] = None,
) -> None:
    """Membership inference: how well can an attacker tell training examples from others?

    Scores every example once, runs the chosen attacks, and reports AUC, TPR at low FPR, advantage and an empirical
    epsilon lower bound (95% confidence) beside the theoretical epsilon. Example:

        privaudit mia fixtures/models/intent-tiny \\
            --members fixtures/data/members.jsonl \\
            --non-members fixtures/data/non_members.jsonl \\
            --population fixtures/data/population.jsonl \\
            --attack loss,lira-offline,rmia --reference-models 4

    As a CI gate (exit 0 pass, 1 a threshold breached, 2 the audit could not complete):

        privaudit mia MODEL ... --fail-above auc=0.6 \\
            --fail-above lira-offline:tpr@1%fpr=0.05 \\
            --fail-if-bound-exceeds-epsilon \\
            --format github --sarif-out privaudit.sarif

    A model behind an endpoint (docs/endpoints.md); label-only endpoints run gap and label-only-augment:

        privaudit mia --endpoint http://localhost:8080/v2/models/intent \\
            --members fixtures/data/members.jsonl \\
            --non-members fixtures/data/non_members.jsonl \\
            --header Authorization=@AUDIT_TOKEN --attack loss,gap

    Reference models on a GPU, or on a Ray cluster (one Ray task per model, cached on shared storage):

        privaudit mia MODEL ... --reference-models 64 \\
            --executor ray --ray-address auto --gpus-per-job 1

    Defaults come from \\[tool.privaudit.mia] in pyproject.toml or \\[mia] in privaudit.toml; flags override them.
    """
    from privaudit.cli.output import AuditReport, GateOptions, finish, lazy, prepare_gate, stage_progress
    from privaudit.endpoint.client import endpoint_from_flags
    from privaudit.gate.measurements import mia_measurements, mia_metrics
    from privaudit.gate.slices import MiaSubjects, check_slice_subjects
    from privaudit.mia.registry import available_attacks
    from privaudit.mia.run import SCHEMA, MiaRequest, run_mia
    from privaudit.mia.slices import check_slice_kinds
    from privaudit.report import formats
    from privaudit.report.records import write_per_example
    from privaudit.report.table import print_mia, print_summary

    remote = endpoint_from_flags(ctx.params)
    kinds = check_slice_kinds(slice_kind or ())
    # The gate's and the reports' flags (--format ... --save-baseline, --report) are read by name from ctx.params.
    plan = prepare_gate(
        ctx,
        GateOptions.from_params(ctx.params),
        metrics=mia_metrics(),
        subjects=MiaSubjects([*available_attacks(), "precomputed"], slice_kinds=kinds),
    )
    request = MiaRequest(
        model_dir=model_dir,
        members=members,
        non_members=non_members,
        attacks=attack,
        attack_options=tuple(attack_option or ()),
        population=population,
        reference_models=reference_models,
        reference_dirs=tuple(reference_dir or ()),
        scores=scores,
        epsilon=epsilon,
        delta=delta,
        seed=seed,
        allow_pickle=allow_pickle,
        batch_size=batch_size,
        train_config=train_config,
        cache_dir=cache_dir,
        slices=kinds,
        slice_min=slice_min,
        top=top,
        redact_texts=redact_texts,
        group_by=group_by,
        group_aggregate=group_aggregate,
        endpoint=remote,
        endpoint_cache=endpoint_cache,
        device=device,
        precision=precision,
        executor=executor,
        ray_address=ray_address,
        workers=workers,
        cpus_per_job=cpus_per_job,
        gpus_per_job=gpus_per_job,
        max_retries=max_retries,
    )
    with stage_progress(ignore="attack ") as on_progress:
        result = run_mia(request, progress=on_progress)
    check_slice_subjects(plan.thresholds, result.slices, [a.name for a in result.attacks])
    if per_example is not None:
        write_per_example(result, per_example)
    audit = AuditReport(
        command="mia",
        schema=SCHEMA,
        result=result,
        measurements=mia_measurements(result),
        bound_metric="epsilon_lb",
        print_result=print_mia,
        markdown=formats.to_markdown,
        write_html=lazy("privaudit.report.html", "write_html"),
        print_summary=print_summary,
    )
    finish(plan, audit)


@app.command()
def attacks() -> None:
    """List the attacks, built-in and from plugins: membership inference and canary extraction, with what each needs.

    Third-party attacks register under the entry-point groups 'privaudit.attacks' (membership) and
    'privaudit.extraction_attacks' (canary extraction); one that fails to import is listed as broken, with the reason.
    Set a parameter with --attack-option ATTACK:PARAM=VALUE of 'privaudit mia' or 'privaudit canary'. Example:

        privaudit attacks
    """
    from privaudit.canary.registry import EXTRACTION
    from privaudit.mia.registry import list_attacks

    # Three columns, the details stacked in the last, so that the table reads at 80 columns; a word too long for
    # its cell (a plugin's module path) folds rather than being cut.
    table = Table(title="attacks")
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("description", overflow="fold")
    for info in [*list_attacks(), *EXTRACTION.describe()]:
        needs = ", ".join(sorted(info.requires)) + (" (online)" if info.online else "")
        if info.error is not None:
            lines = [f"[red]broken: {escape(info.error)}[/]"]
        else:
            lines = [escape(info.description), f"[dim]needs:[/] {needs}"]
            if info.parameters:
                lines.append(f"[dim]parameters:[/] {', '.join(info.parameters)}")
        lines.append(f"[dim]source:[/] {escape(info.source)}")
        table.add_row(info.name, info.kind, "\n".join(lines))
    Console().print(table)

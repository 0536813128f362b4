"""``privaudit mia`` and ``privaudit attacks``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from privaudit.cli.app import app
from privaudit.cli.options import CpusPerJob, Device, Executor, GpusPerJob, MaxRetries, Precision, RayAddress, Workers
from privaudit.cli.output import (
    Baseline,
    ExitZero,
    FailIfBoundExceedsEpsilon,
    JsonOut,
    JunitOut,
    MarkdownOut,
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
            help="Set an attack's parameter (repeatable), e.g. rmia:a=0.5, rmia:gamma=2, "
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
    output_format: OutputFormat = "table",
    output: Output = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained HTML report with ROC curves.", rich_help_panel="Output"),
    ] = None,
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
    baseline: Baseline = None,
    max_increase: Annotated[list[str] | None, max_increase_option(metavar="[ATTACK:]METRIC=VALUE")] = None,
    save_baseline: SaveBaseline = None,
    exit_zero: ExitZero = False,
    json_out: JsonOut = None,
    junit_out: JunitOut = None,
    sarif_out: SarifOut = None,
    markdown_out: MarkdownOut = None,
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

    Reference models on a GPU, or on a Ray cluster (one Ray task per model, cached on shared storage):

        privaudit mia MODEL ... --reference-models 64 \\
            --executor ray --ray-address auto --gpus-per-job 1

    Defaults come from \\[tool.privaudit.mia] in pyproject.toml or \\[mia] in privaudit.toml; flags override them.
    """
    from privaudit.cli.output import AuditReport, GateOptions, finish, lazy, prepare_gate, stage_progress
    from privaudit.gate.measurements import mia_measurements, mia_metrics
    from privaudit.mia.registry import available_attacks
    from privaudit.mia.run import SCHEMA, MiaRequest, run_mia
    from privaudit.report import formats
    from privaudit.report.table import print_mia

    if scores is not None and model_dir is not None:
        raise PrivauditError("give MODEL_DIR or --scores FILE, not both")
    # The gate's and the reports' flags (--format ... --save-baseline, --report) are read by name from ctx.params.
    plan = prepare_gate(
        ctx,
        GateOptions.from_params(ctx.params),
        metrics=mia_metrics(),
        subjects=[*available_attacks(), "precomputed"],
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
    audit = AuditReport(
        command="mia",
        schema=SCHEMA,
        result=result,
        measurements=mia_measurements(result),
        bound_metric="epsilon_lb",
        print_result=print_mia,
        markdown=formats.to_markdown,
        write_html=lazy("privaudit.report.html", "write_html"),
    )
    finish(plan, audit)


@app.command()
def attacks() -> None:
    """List the membership inference attacks, built-in and from plugins, with what each needs.

    Third-party attacks register under the entry-point group 'privaudit.attacks'; one that fails to import is listed
    as broken, with the reason. Set a parameter with 'privaudit mia --attack-option ATTACK:PARAM=VALUE'. Example:

        privaudit attacks
    """
    from privaudit.mia.registry import list_attacks

    table = Table(title="attacks")
    for column in ("name", "needs", "parameters", "description", "source"):
        table.add_column(column)
    for info in list_attacks():
        needs = ", ".join(sorted(info.requires)) + (" (online)" if info.online else "")
        description = info.description if info.error is None else f"[red]broken: {info.error}[/]"
        table.add_row(info.name, needs, ", ".join(info.parameters), description, info.source)
    Console().print(table)

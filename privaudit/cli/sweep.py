"""``privaudit sweep``: one recipe at several target epsilons, each point trained once (cached) and audited."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from privaudit.cli import train_options as opt
from privaudit.cli.app import app
from privaudit.cli.options import CpusPerJob, Device, GpusPerJob, MaxRetries, Precision, RayAddress, Workers
from privaudit.cli.output import FailIfBoundExceedsEpsilon, NoFailIfBoundExceedsEpsilon


@app.command()
def sweep(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="Training data: JSONL or CSV with 'text' and 'label'.")],
    epsilons: Annotated[
        str,
        typer.Option(
            help="Comma-separated target epsilons, one training run each; inf trains without DP.",
            rich_help_panel="Sweep",
        ),
    ] = "inf,16,8,4,2,1",
    non_members: Annotated[
        Path,
        typer.Option(
            help="Examples not trained on: the audit's non-members and the utility's test set.", rich_help_panel="Data"
        ),
    ] = ...,
    population: Annotated[
        Path | None,
        typer.Option(help="More non-members: reference models' pool and RMIA's z-samples.", rich_help_panel="Data"),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Sweep directory: points (cached, resumable), reference models, sweep.json, sweep.html.",
            rich_help_panel="Sweep",
        ),
    ] = ...,
    attack: Annotated[
        str | None,
        typer.Option("--attack", "-a", help="Comma-separated attacks, or 'all'.", rich_help_panel="Attacks"),
    ] = None,
    attack_option: Annotated[
        list[str] | None,
        typer.Option(
            "--attack-option",
            metavar="ATTACK:PARAM=VALUE",
            help="Set an attack's parameter.",
            rich_help_panel="Attacks",
        ),
    ] = None,
    reference_models: Annotated[
        int,
        typer.Option(
            min=0, help="Reference models per point, trained with that point's recipe.", rich_help_panel="Attacks"
        ),
    ] = 0,
    group_by: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Audit users, not records, at every point: FIELD of the data, --non-members and --population names "
            "each record's owner (as 'privaudit mia --group-by'). The plot then sets each point's per-user bound "
            "beside the group-privacy ε of its largest user.",
            rich_help_panel="Attacks",
        ),
    ] = None,
    group_aggregate: Annotated[
        str,
        typer.Option(
            metavar="HOW",
            help="With --group-by: mean, max, logsumexp, top-k-mean, or auto (chosen on the reference models).",
            rich_help_panel="Attacks",
        ),
    ] = "auto",
    extract: Annotated[
        bool, typer.Option(help="Run ModIvA on the planted canaries.", rich_help_panel="Canaries")
    ] = True,
    modiva_steps: Annotated[int, typer.Option(min=1, help="ModIvA's steps.", rich_help_panel="Canaries")] = 300,
    modiva_restarts: Annotated[int, typer.Option(min=1, help="ModIvA's restarts.", rich_help_panel="Canaries")] = 16,
    base: opt.Base = None,
    from_scratch: opt.FromScratch = False,
    train_layers: opt.TrainLayers = "all",
    lora_rank: opt.LoraRank = 0,
    lora_alpha: opt.LoraAlpha = None,
    lora_targets: opt.LoraTargets = "",
    arch: opt.Arch = "bert",
    embedding_dim: opt.EmbeddingDim = None,
    hidden_size: opt.HiddenSize = 100,
    num_filters: opt.NumFilters = 100,
    char_embeddings: opt.CharEmbeddings = False,
    word_vectors: opt.WordVectors = None,
    dropout: opt.Dropout = None,
    early_stopping: opt.EarlyStopping = 0,
    validation: opt.Validation = None,
    validation_fraction: opt.ValidationFraction = 0.0,
    epochs: opt.Epochs = 10,
    batch_size: opt.BatchSize = 64,
    lr: opt.Lr = 1e-3,
    dp_lr: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Learning rate of the DP points (default --lr): clipping bounds each DP-SGD step, so DP recipes "
            "often take a larger one.",
            rich_help_panel="DP-SGD",
        ),
    ] = None,
    max_length: opt.MaxLength = 64,
    seed: opt.Seed = 0,
    max_grad_norm: opt.MaxGradNorm = 1.0,
    delta: opt.Delta = None,
    accountant: opt.Accountant = "rdp",
    canary: opt.Canary = None,
    canary_label: opt.CanaryLabel = None,
    canary_count: opt.CanaryCount = 10,
    canary_repeats: opt.CanaryRepeats = 10,
    canary_controls: opt.CanaryControls = None,
    audit_canaries: opt.AuditCanaries = 0,
    audit_template: opt.AuditTemplate = opt.AUDIT_TEMPLATE,
    gradient_canaries: Annotated[
        int,
        typer.Option(
            min=0,
            help="White-box gradient canaries in each DP point's training (not inf's), audited with the f-DP "
            "one-run analysis as 'privaudit dp-audit' does.",
            rich_help_panel="Canaries",
        ),
    ] = 0,
    device: Device = "auto",
    precision: Precision = "fp32",
    executor: Annotated[
        str,
        typer.Option(
            help="Where the points and their reference models train: local (one after another, here) or ray (one "
            "Ray task each).",
            rich_help_panel="Compute",
            metavar="EXECUTOR",
        ),
    ] = "local",
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_job: CpusPerJob = 1,
    gpus_per_job: GpusPerJob = 0.0,
    max_retries: MaxRetries = 3,
    fail_if_bound_exceeds_epsilon: FailIfBoundExceedsEpsilon = False,
    no_fail_if_bound_exceeds_epsilon: NoFailIfBoundExceedsEpsilon = False,
) -> None:
    """Theory against practice: train one recipe at each target epsilon, and audit every point.

    Each point is one training run (DP-SGD at the target epsilon; inf: no DP), kept in OUT/points and not retrained
    when its model directory is complete. Each is audited with the membership attacks (reference models trained under
    the same DP recipe), the planted canaries (exposure, ModIvA, the one-run audit), with --gradient-canaries M the
    white-box f-DP audit of each DP point, and utility on the non-members (accuracy, macro-F1). Writes OUT/sweep.json and OUT/sweep.html; exit 1 with --fail-if-bound-exceeds-epsilon
    when any point's empirical bound is above its theoretical epsilon. Examples:

        privaudit sweep fixtures/data/members.jsonl --epsilons inf,8,2 \\
            --non-members fixtures/data/non_members.jsonl --out sweep \\
            --epochs 30 --max-length 32 --batch-size 256 --lr 1e-2

        privaudit sweep fixtures/data/members.jsonl --epsilons inf,16,8,4,2,1 \\
            --non-members fixtures/data/non_members.jsonl \\
            --population fixtures/data/population.jsonl --out sweep \\
            --attack loss,lira-offline --reference-models 8 \\
            --executor ray --workers 4
    """
    from privaudit.cli.console import err_console
    from privaudit.cli.output import stage_progress
    from privaudit.report.sweep_html import write_sweep_html
    from privaudit.sweep.run import REPORT_FILE, SweepRequest, parse_epsilons, run_sweep
    from privaudit.training.executor import RayOptions

    values = parse_epsilons(epsilons)  # before anything trains
    ray = RayOptions(
        address=ray_address,
        workers=workers,
        cpus_per_job=cpus_per_job,
        gpus_per_job=gpus_per_job,
        max_retries=max_retries,
    )
    recipe = opt.train_job(ctx.params, out=out / "points", dp=False, canaries_out=None)
    request = SweepRequest(
        recipe=recipe,
        epsilons=tuple(values),
        out=out,
        non_members=non_members,
        population=population,
        attacks=attack,
        attack_options=tuple(attack_option or ()),
        reference_models=reference_models,
        seed=seed,
        group_by=group_by,
        group_aggregate=None if group_aggregate == "auto" else group_aggregate,
        extract=extract,
        modiva_steps=modiva_steps,
        modiva_restarts=modiva_restarts,
        dp_lr=dp_lr,
        device=device,
        precision=precision,
        executor=executor,
        ray=ray,
    )
    with stage_progress(ignore="attack ") as on_progress:
        result = run_sweep(request, progress=on_progress)
    document = result.to_dict()
    write_sweep_html(document, out / REPORT_FILE)
    Console().print(_table(document))
    err_console.print(f"wrote {out / 'sweep.json'} and {out / REPORT_FILE}")
    breaches = result.exceeded()
    for point, name, bound, eps in breaches:
        err_console.print(f"[bold red]{point}:[/] {name} empirical ε ≥ {bound:.3f} exceeds the theoretical ε {eps:.3f}")
    if fail_if_bound_exceeds_epsilon and not no_fail_if_bound_exceeds_epsilon and breaches:
        raise typer.Exit(1)


def _table(document: dict) -> Table:
    table = Table(title="privacy sweep")
    columns = ["point", "ε (theory)", "accuracy", "macro-F1", "best attack", "TPR@1%FPR [95% CI]", "ε ≥ (95%)"]
    columns += ["exposure", "extracted", "one-run ε ≥", "white-box ε ≥"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("point", "best attack") else "right")
    for p in document["points"]:
        best = p.get("empirical_epsilon") or {}
        attack = next((a for a in p["attacks"] if a["name"] == best.get("attack")), None)
        tpr = (attack or {}).get("tpr_at_1%fpr") or {}
        canaries = p.get("canaries") or {}
        table.add_row(
            p["name"],
            "∞" if p["epsilon"] is None else f"{p['epsilon']:.3f}",
            f"{p['utility']['accuracy']:.1%}",
            f"{p['utility']['macro_f1']:.3f}",
            best.get("attack", "—"),
            "n/a" if tpr.get("tpr") is None else f"{tpr['tpr']:.1%} [{tpr['low']:.1%}, {tpr['high']:.1%}]",
            "—" if best.get("lower_bound") is None else f"{best['lower_bound']:.3f}",
            "—" if canaries.get("mean_exposure_inserted") is None else f"{canaries['mean_exposure_inserted']:.2f}",
            "—"
            if canaries.get("extracted_inserted") is None
            else f"{canaries['extracted_inserted']}/{canaries['n_inserted']}",
            "—" if not p.get("one_run") else f"{p['one_run']['epsilon_lower_bound']:.3f}",
            "—" if not p.get("white_box") else f"{p['white_box']['eps_delta']:.3f}",
        )
    return table

"""``privaudit train`` and ``privaudit epsilon``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from privaudit.cli import train_options as opt
from privaudit.cli.app import app
from privaudit.cli.console import progress_bar
from privaudit.cli.options import Device, Precision


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="Training data: JSONL or CSV with 'text' and 'label'.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write the model into.", rich_help_panel="Model")
    ],
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
    epochs: opt.Epochs = 10,
    batch_size: opt.BatchSize = 64,
    lr: opt.Lr = 1e-3,
    max_length: opt.MaxLength = 64,
    seed: opt.Seed = 0,
    dropout: opt.Dropout = None,
    early_stopping: opt.EarlyStopping = 0,
    validation: opt.Validation = None,
    validation_fraction: opt.ValidationFraction = 0.0,
    dp: Annotated[
        bool, typer.Option("--dp", help="Train with DP-SGD (Opacus, Poisson sampling).", rich_help_panel="DP-SGD")
    ] = False,
    noise_multiplier: Annotated[
        float | None, typer.Option(help="DP-SGD noise over clipping norm.", rich_help_panel="DP-SGD")
    ] = None,
    target_epsilon: Annotated[
        float | None,
        typer.Option(help="Pick the noise multiplier that reaches this epsilon.", rich_help_panel="DP-SGD"),
    ] = None,
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
            help="With --dp: white-box gradient canaries (Nasr et al. 2023), each in its own unused embedding "
            "coordinate, in with probability 1/2, observed at every step; audit with 'privaudit dp-audit'.",
            rich_help_panel="Canaries",
        ),
    ] = 0,
    canaries_out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the canary secrets (never inside the model directory).", rich_help_panel="Canaries"
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.", rich_help_panel="Model")] = False,
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """Train a text classifier, optionally with DP-SGD and planted canaries.

    Writes the model (safetensors), its tokenizer and privaudit.json (recipe, data fingerprint, DP parameters) to
    --out. With --train-layers or --lora-rank only some parameters train (and are clipped and noised under --dp);
    LoRA adapters are merged into the base weights before saving, so the model directory is a plain classifier.
    Example:

        privaudit train fixtures/data/members.jsonl --out model \\
            --dp --target-epsilon 8

    A BiLSTM over word embeddings with character features, dropout and early stopping, as the NLU models Parikh et
    al. (2022) attacked with ModIvA:

        privaudit train DATA --out model --arch bilstm --char-embeddings \\
            --dropout 0.5 --early-stopping 3 --validation-fraction 0.1

    On a GPU, in bf16 (non-DP training only; DP-SGD trains in fp32):

        privaudit train DATA --out model --base BASE \\
            --device cuda --precision bf16
    """
    from privaudit.training.job import run_train

    job = opt.train_job(ctx.params)
    with progress_bar() as bar:
        tasks: list = []

        def on_step(done: int, total: int) -> None:
            if not tasks:
                tasks.append(bar.add_task("training", total=total))
            bar.update(tasks[0], completed=done, total=total)

        summary = run_train(job, on_step=on_step)
    table = Table(title=f"trained {out}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def epsilon(
    model_dir: Annotated[
        Path | None, typer.Argument(help="Model directory whose privaudit.json records the DP parameters.")
    ] = None,
    noise_multiplier: Annotated[
        float | None, typer.Option(help="Noise standard deviation over clipping norm.", rich_help_panel="From flags")
    ] = None,
    sample_rate: Annotated[
        float | None, typer.Option(help="Poisson sampling rate: batch size / N.", rich_help_panel="From flags")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps.", rich_help_panel="From flags")] = None,
    delta: Annotated[float | None, typer.Option(help="Target delta.", rich_help_panel="From flags")] = None,
    accountant: Annotated[
        str, typer.Option(help="rdp (Mironov 2017), prv (Gopi et al. 2021) or gdp.", rich_help_panel="From flags")
    ] = "rdp",
) -> None:
    """Theoretical epsilon of DP-SGD through Opacus's accountants.

    Either from flags:

        privaudit epsilon --noise-multiplier 1.5 --sample-rate 0.04 \\
            --steps 2250 --delta 1e-5

    or from a model trained with 'privaudit train --dp':

        privaudit epsilon fixtures/models/intent-tiny-dp
    """
    from privaudit.stats.accounting import theoretical_epsilon

    value, delta = theoretical_epsilon(
        model_dir,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        accountant=accountant,
    )
    typer.echo(f"epsilon = {value:.3f} (delta = {delta:g}, accountant = {accountant})")

"""``privaudit train`` and ``privaudit epsilon``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from privaudit.cli.app import app
from privaudit.cli.console import progress_bar
from privaudit.errors import PrivauditError


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Training data: JSONL or CSV with 'text' and 'label'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the model into.")],
    base: Annotated[
        Path | None, typer.Option(help="Fine-tune this local Hugging Face model directory (safetensors).")
    ] = None,
    from_scratch: Annotated[
        bool,
        typer.Option("--from-scratch", help="Train a small BERT and its WordPiece tokenizer on DATA (default)."),
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the data.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size (expected batch size with --dp).")] = 64,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate (AdamW).")] = 1e-3,
    max_length: Annotated[int, typer.Option(min=8, help="Maximum tokens per text.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same model.")] = 0,
    dp: Annotated[bool, typer.Option("--dp", help="Train with DP-SGD (Opacus, Poisson sampling).")] = False,
    noise_multiplier: Annotated[float | None, typer.Option(help="DP-SGD noise over clipping norm.")] = None,
    target_epsilon: Annotated[
        float | None, typer.Option(help="Pick the noise multiplier that reaches this epsilon.")
    ] = None,
    max_grad_norm: Annotated[float, typer.Option(help="DP-SGD per-example clipping norm.")] = 1.0,
    delta: Annotated[float | None, typer.Option(help="DP delta; default 1e-5, must be below 1/N.")] = None,
    accountant: Annotated[str, typer.Option(help="rdp, prv or gdp.")] = "rdp",
    canary: Annotated[
        str | None, typer.Option(help="Canary template with slots, e.g. 'my pin code is {d} {d} {d} {d}'.")
    ] = None,
    canary_label: Annotated[
        str | None, typer.Option(help="Label the canaries are trained with, or 'random': a random label each.")
    ] = None,
    canary_count: Annotated[int, typer.Option(min=0, help="Distinct secrets to plant.")] = 10,
    canary_repeats: Annotated[int, typer.Option(min=1, help="Copies of each planted secret.")] = 10,
    canary_controls: Annotated[
        int | None, typer.Option(min=0, help="Never-inserted control secrets (default: as many as planted).")
    ] = None,
    audit_canaries: Annotated[
        int, typer.Option(min=0, help="One-run audit canaries, each inserted with probability 1/2.")
    ] = 0,
    audit_template: Annotated[
        str, typer.Option(help="Template of the one-run audit canaries (random secret, random label).")
    ] = "my secret number is {d} {d} {d} {d} {d} {d}",
    gradient_canaries: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --dp: white-box gradient canaries (Nasr et al. 2023), each in its own unused embedding "
            "coordinate, in with probability 1/2, observed at every step; audit with 'privaudit dp-audit'.",
        ),
    ] = 0,
    canaries_out: Annotated[
        Path | None,
        typer.Option(help="Where to write the canary secrets (never inside the model directory)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Train a text classifier, optionally with DP-SGD and planted canaries.

    Writes the model (safetensors), its tokenizer and privaudit.json (recipe, data fingerprint, DP parameters) to
    --out. Example:

        privaudit train fixtures/data/members.jsonl --out model --dp --target-epsilon 8
    """
    from privaudit.training.job import TrainJob, run_train

    job = TrainJob(
        data=data,
        out=out,
        base=base,
        from_scratch=from_scratch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        seed=seed,
        dp=dp,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        max_grad_norm=max_grad_norm,
        delta=delta,
        accountant=accountant,
        canary=canary,
        canary_label=canary_label,
        canary_count=canary_count,
        canary_repeats=canary_repeats,
        canary_controls=canary_controls,
        audit_canaries=audit_canaries,
        audit_template=audit_template,
        gradient_canaries=gradient_canaries,
        canaries_out=canaries_out,
        overwrite=overwrite,
    )
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
    noise_multiplier: Annotated[float | None, typer.Option(help="Noise standard deviation over clipping norm.")] = None,
    sample_rate: Annotated[float | None, typer.Option(help="Poisson sampling rate: batch size / N.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps.")] = None,
    delta: Annotated[float | None, typer.Option(help="Target delta.")] = None,
    accountant: Annotated[str, typer.Option(help="rdp (Mironov 2017), prv (Gopi et al. 2021) or gdp.")] = "rdp",
) -> None:
    """Theoretical epsilon of DP-SGD through Opacus's accountants.

    Either from flags:

        privaudit epsilon --noise-multiplier 1.5 --sample-rate 0.04 --steps 2250 --delta 1e-5

    or from a model trained with 'privaudit train --dp':

        privaudit epsilon fixtures/models/intent-tiny-dp
    """
    from privaudit.stats import accounting

    if model_dir is not None:
        found = accounting.epsilon_from_model(model_dir, accountant=accountant)
        if found is None:
            raise PrivauditError(f"{model_dir}: trained without DP, so its epsilon is infinite")
        value, delta = found
    else:
        missing = [
            flag
            for flag, v in (
                ("--noise-multiplier", noise_multiplier),
                ("--sample-rate", sample_rate),
                ("--steps", steps),
                ("--delta", delta),
            )
            if v is None
        ]
        if missing:
            raise PrivauditError(f"give a model directory, or all of {', '.join(missing)}")
        value = accounting.epsilon(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
            accountant=accountant,
        )
    typer.echo(f"epsilon = {value:.3f} (delta = {delta:g}, accountant = {accountant})")

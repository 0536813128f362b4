"""``privaudit plant``: mix one-run data canaries into the user's own training data (library:
:mod:`privaudit.canary.plant`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privaudit.canary.plant import DEFAULT_TOKENS_PER_CANARY
from privaudit.cli.app import app
from privaudit.cli.console import err_console


@app.command()
def plant(
    data: Annotated[Path, typer.Argument(help="Training data: JSONL or CSV with 'text' and 'label'.")],
    base: Annotated[
        Path,
        typer.Option(
            help="The base model directory you fine-tune from: its tokenizer decides which wordpieces the data "
            "leaves free.",
            rich_help_panel="Data",
        ),
    ],
    count: Annotated[
        int,
        typer.Option(
            "--count",
            "-m",
            min=1,
            help="Canaries to draw; each is inserted with probability 1/2.",
            rich_help_panel="Canaries",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="New directory for the planted data and the secret file (must not exist).",
            rich_help_panel="Data",
        ),
    ],
    seed: Annotated[
        int, typer.Option(help="Seeds the canaries, their coins and the shuffle.", rich_help_panel="Canaries")
    ] = 0,
    tokens_per_canary: Annotated[
        int,
        typer.Option(min=1, help="Free wordpieces each canary owns.", rich_help_panel="Canaries"),
    ] = DEFAULT_TOKENS_PER_CANARY,
    force: Annotated[
        bool,
        typer.Option("--force", help="Allow --count above 10% of the data's rows.", rich_help_panel="Canaries"),
    ] = False,
) -> None:
    """Plant data canaries for a one-run DP audit of a model you train yourself.

    Each canary is a short text of wordpieces that occur nowhere in DATA (so its input-embedding rows move only if it
    was trained on), with a random label; each is added to the data with probability 1/2. Writes OUT/DATA's name (the
    planted training file, rows shuffled, same format) and OUT/secret/canaries.jsonl (the secret canary file). Train
    on the planted file with your own pipeline:

        privaudit plant train.jsonl --base bert-base --count 100 --out planted

    then fine-tune bert-base on planted/train.jsonl your way (here into my-model), and audit the final model:

        privaudit dp-audit my-model --base bert-base \\
            -c planted/secret/canaries.jsonl --epsilon 8

    Keep OUT/secret away from the trainer: a trainer that reads it sees which canaries are in, and the audit is void.
    """
    from privaudit.canary.plant import plant as plant_canaries

    result = plant_canaries(
        data, base=base, count=count, out=out, seed=seed, force=force, tokens_per_canary=tokens_per_canary
    )
    typer.echo(
        f"planted {result.inserted} of {result.canaries} canaries ({result.tokens_per_canary} free wordpieces each, "
        f"of {result.free_tokens} free) into {result.data} ({result.rows} rows)"
    )
    n_in, n_out = result.inserted, result.canaries - result.inserted
    if n_in and n_out:
        from privaudit.stats.auditor import reach

        typer.echo(
            f"reach: these {result.canaries} canaries can show at most ε {reach(n_in, n_out, 0.05, 1e-5):.2f} "
            "(δ 1e-5, 95% confidence, every inserted one on top); a larger claim can fail only the estimate's gate "
            "(--fail-if-estimate-exceeds-epsilon), or plant more"
        )
    typer.echo(f"train on:  {result.data}")
    typer.echo(f"audit with: privaudit dp-audit MODEL_DIR --base {base} -c {result.secret}")
    err_console.print(
        f"[bold yellow]warning:[/] {result.secret} holds the canary secrets (which canaries are in): never give it, "
        "or its directory, to the trainer; keep it for 'privaudit dp-audit' only",
        highlight=False,
        soft_wrap=True,
    )

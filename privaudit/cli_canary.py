"""The ``privaudit canary`` command (registered on the main app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from privaudit.cli import app, err_console, progress_bar, write_text
from privaudit.errors import PrivauditError

FORMATS = ("table", "json")


@app.command()
def canary(
    model_dir: Annotated[Path, typer.Argument(help="The audited model directory.")],
    canaries: Annotated[
        Path, typer.Option("--canaries", "-c", help="Canary file (JSONL) from 'privaudit train --canaries-out'.")
    ],
    exposure: Annotated[bool, typer.Option(help="Rank each secret among all candidates (Secret Sharer).")] = True,
    extract: Annotated[bool, typer.Option(help="White-box ModIvA extraction of each secret.")] = True,
    one_run: Annotated[
        bool, typer.Option("--one-run", help="One-run epsilon audit (Steinke et al. 2023) on the audit canaries.")
    ] = False,
    sample: Annotated[
        int | None, typer.Option(min=100, help="Sample N candidates and extrapolate, for spaces over 1e6.")
    ] = None,
    epsilon: Annotated[float | None, typer.Option(help="Theoretical epsilon (default: from privaudit.json).")] = None,
    delta: Annotated[float | None, typer.Option(help="Delta of the one-run bound (default: the model's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and ModIvA restarts.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="ModIvA optimisation steps.")] = 300,
    restarts: Annotated[int, typer.Option(min=1, help="ModIvA random restarts (run as one batch).")] = 16,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML report.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickled weights (trust them first).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Candidates per forward pass.")] = 512,
) -> None:
    """Canary extraction: can an attacker read planted secrets back?

    Reports each secret's exposure (log2 of the candidate space minus log2 of its rank), whether ModIvA rebuilds
    it from the weights, and with --one-run an epsilon lower bound from a single training run. Example:

        privaudit canary fixtures/models/intent-tiny -c fixtures/models/intent-tiny.canaries.jsonl --one-run
    """
    from privaudit.canary import CanaryRequest, run_canary
    from privaudit.report.canary_table import print_canary

    if output_format not in FORMATS:
        raise PrivauditError(f"--format '{output_format}' is unknown; use one of {', '.join(FORMATS)}")
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
    )
    with progress_bar() as bar:
        tasks: dict[str, object] = {}

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = run_canary(request, progress=on_progress)
    if output_format == "json":
        write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", output)
    print_canary(result, Console(stderr=output_format != "table" and output is None))
    if report is not None:
        from privaudit.report.canary_html import write_canary_html

        write_canary_html(result, report)
        err_console.print(f"HTML report written to {report}")

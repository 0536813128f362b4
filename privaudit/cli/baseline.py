"""``privaudit baseline save``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from privaudit.cli.app import app
from privaudit.cli.console import err_console, write_text

baseline_app = typer.Typer(
    name="baseline",
    help="Baselines: save an audit's metrics, so later audits fail only on regressions (--max-increase).",
    invoke_without_command=True,
)
app.add_typer(baseline_app)


@baseline_app.callback()
def _baseline(ctx: typer.Context) -> None:
    # Help by hand, not no_args_is_help: its exception is typer's own click's, which _Group would call internal.
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


@baseline_app.command("save")
def baseline_save(
    result_file: Annotated[Path, typer.Argument(help="A result written by 'privaudit mia --format json'.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the baseline here, not stdout.")] = None,
) -> None:
    """Turn an audit's JSON result (mia or canary) into a baseline for later audits to compare with. Example:

    privaudit mia MODEL ... --format json -o result.json
    privaudit baseline save result.json -o baseline.json
    privaudit mia MODEL ... --baseline baseline.json --max-increase auc=0.02
    """
    from privaudit.gate.baseline import baseline_from_result, read_json

    document = baseline_from_result(read_json(result_file))
    write_text(json.dumps(document, indent=2) + "\n", output)
    if output is not None:
        err_console.print(f"baseline of {len(document['measurements'])} measurements written to {output}")

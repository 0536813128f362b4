"""The ``privaudit`` command line: thin wrappers that parse flags, call the library, and report.

Exit codes follow ruff and mypy: 0 all gates passed, 1 a leak over a threshold, 2 the run could not complete.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from privaudit import __version__
from privaudit.config import config_option
from privaudit.errors import PrivauditError

err_console = Console(stderr=True)
state = {"debug": False}


def _click_flow_exceptions() -> tuple[type[BaseException], ...]:
    """Exit, abort and usage errors of click and of the click copy typer may bundle: click reports those itself."""
    modules = [click]
    try:
        from typer import _click as bundled  # typer >= 0.20 vendors click

        modules.append(bundled)
    except ImportError:
        pass
    found: list[type[BaseException]] = [typer.Exit, typer.Abort]
    for module in modules:
        exceptions = getattr(module, "exceptions", module)
        for name in ("Exit", "Abort", "ClickException"):
            cls = getattr(exceptions, name, None) or getattr(module, name, None)
            if isinstance(cls, type):
                found.append(cls)
    return tuple(found)


_PASS_THROUGH = _click_flow_exceptions()


class _Group(TyperGroup):
    """Turns errors into one clear line and exit code 2, for the console script and for tests alike."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except PrivauditError as err:
            if state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from err
        except KeyboardInterrupt as err:
            err_console.print("interrupted")
            raise typer.Exit(2) from err
        except Exception as err:  # a bug or an unexpected library failure: exit 2, never a silent 0
            if state["debug"]:
                raise
            err_console.print(
                f"[bold red]internal error:[/] {type(err).__name__}: {escape(str(err))} "
                "(rerun with --debug for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from err


app = typer.Typer(
    cls=_Group,
    name="privaudit",
    help=(
        "Measure how much a text classifier leaks its training data.\n\n"
        "Train (optionally with DP-SGD and planted canaries), attack with membership inference and canary "
        "extraction, and compare the empirical epsilon with the theoretical one.\n\n"
        "Exit codes: 0 pass, 1 leak over a threshold, 2 the audit could not complete."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _LazyProgress(Progress):
    """A progress display that appears with its first task: a run that fails its checks shows only its error."""

    def __enter__(self) -> _LazyProgress:
        return self

    def add_task(self, *args, **kwargs):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


def progress_bar(console: Console | None = None) -> Progress:
    """The Rich progress bar every long step uses (on stderr, so stdout stays machine-readable)."""
    return _LazyProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or err_console,
        transient=False,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"privaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state["debug"] = debug


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
    from privaudit.trainjob import TrainJob, run_train

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
    from privaudit import accounting

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


@app.command()
def mia(
    ctx: typer.Context,
    model_dir: Annotated[Path | None, typer.Argument(help="The audited model directory (safetensors).")] = None,
    members: Annotated[Path | None, typer.Option(help="Training examples (JSONL/CSV).")] = None,
    non_members: Annotated[Path | None, typer.Option(help="Examples not trained on, same distribution.")] = None,
    attack: Annotated[
        str | None, typer.Option("--attack", "-a", help="Comma-separated attacks, or 'all' (see 'privaudit attacks').")
    ] = None,
    attack_option: Annotated[
        list[str] | None,
        typer.Option(
            "--attack-option",
            metavar="ATTACK:PARAM=VALUE",
            help="Set an attack's parameter (repeatable), e.g. rmia:a=0.5, rmia:gamma=2, "
            "lira-offline:fixed_variance=false; 'privaudit attacks' lists each attack's parameters.",
        ),
    ] = None,
    population: Annotated[
        Path | None, typer.Option(help="More non-members: train reference models and RMIA's z-samples.")
    ] = None,
    reference_models: Annotated[
        int, typer.Option(min=0, help="Reference models to train (cached) for reference-loss, LiRA, RMIA.")
    ] = 0,
    reference_dir: Annotated[
        list[Path] | None,
        typer.Option(
            help="A reference model already trained without the audited examples (repeatable): used instead of "
            "training any (offline attacks only)."
        ),
    ] = None,
    train_config: Annotated[
        Path | None, typer.Option(help="Training recipe (privaudit.json) for reference models, if not the model's.")
    ] = None,
    scores: Annotated[
        Path | None, typer.Option(help="Audit precomputed logits or scores instead of a model (see docs).")
    ] = None,
    epsilon: Annotated[
        float | None, typer.Option(help="Theoretical epsilon (default: from the model's privaudit.json).")
    ] = None,
    delta: Annotated[float | None, typer.Option(help="Delta of the bounds (default: the model's, else 1e-5).")] = None,
    seed: Annotated[int, typer.Option(help="Seed: reference models, bootstrap, splits. Same seed, same numbers.")] = 0,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="table, json, junit, sarif, github or markdown.")
    ] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here, not stdout.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report with ROC curves.")
    ] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickled weights (runs code from the file: trust it first).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 128,
    cache_dir: Annotated[Path | None, typer.Option(help="Reference-model cache (default .cache/privaudit).")] = None,
    fail_above: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-above",
            metavar="[ATTACK:]METRIC=VALUE",
            help="Exit 1 if a metric is above VALUE (repeatable): auc, advantage, epsilon_lb, tpr@1%fpr, ...",
        ),
    ] = None,
    fail_if_bound_exceeds_epsilon: Annotated[
        bool,
        typer.Option(
            "--fail-if-bound-exceeds-epsilon/--no-fail-if-bound-exceeds-epsilon",
            help="Exit 1 if an empirical epsilon lower bound exceeds the theoretical epsilon.",
        ),
    ] = False,
    baseline: Annotated[
        Path | None, typer.Option(help="Compare with this baseline (see 'privaudit baseline save').")
    ] = None,
    max_increase: Annotated[
        list[str] | None,
        typer.Option(
            "--max-increase",
            metavar="[ATTACK:]METRIC=VALUE",
            help="With --baseline: exit 1 if a metric rose by more than VALUE (repeatable).",
        ),
    ] = None,
    save_baseline: Annotated[Path | None, typer.Option(help="Save this audit's metrics as a baseline.")] = None,
    exit_zero: Annotated[
        bool, typer.Option("--exit-zero", help="Report breaches but exit 0 (errors still exit 2).")
    ] = False,
    json_out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    junit_out: Annotated[Path | None, typer.Option(help="Also write JUnit XML (one test case per check) here.")] = None,
    sarif_out: Annotated[Path | None, typer.Option(help="Also write SARIF 2.1.0 (one result per breach) here.")] = None,
    markdown_out: Annotated[Path | None, typer.Option(help="Also write a Markdown summary (PR comment) here.")] = None,
    config: Annotated[Path | None, config_option("mia")] = None,
) -> None:
    """Membership inference: how well can an attacker tell training examples from others?

    Scores every example once, runs the chosen attacks, and reports AUC, TPR at low FPR, advantage and an empirical
    epsilon lower bound (95% confidence) beside the theoretical epsilon. Example:

        privaudit mia fixtures/models/intent-tiny --members fixtures/data/members.jsonl \
            --non-members fixtures/data/non_members.jsonl --population fixtures/data/population.jsonl \
            --attack loss,lira-offline,rmia --reference-models 4

    As a CI gate (exit 0 pass, 1 a threshold breached, 2 the audit could not complete):

        privaudit mia MODEL ... --fail-above auc=0.6 --fail-above lira-offline:tpr@1%fpr=0.05 \
            --fail-if-bound-exceeds-epsilon --format github --sarif-out privaudit.sarif

    Defaults come from \\[tool.privaudit.mia] in pyproject.toml or \\[mia] in privaudit.toml; flags override them.
    """
    from privaudit.cli_output import AuditReport, GateOptions, finish, lazy, prepare_gate, stage_progress
    from privaudit.measurements import mia_measurements, mia_metrics
    from privaudit.mia import SCHEMA, MiaRequest, run_mia
    from privaudit.registry import available_attacks
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
    from privaudit.registry import list_attacks

    table = Table(title="attacks")
    for column in ("name", "needs", "parameters", "description", "source"):
        table.add_column(column)
    for info in list_attacks():
        needs = ", ".join(sorted(info.requires)) + (" (online)" if info.online else "")
        description = info.description if info.error is None else f"[red]broken: {info.error}[/]"
        table.add_row(info.name, needs, ", ".join(info.parameters), description, info.source)
    Console().print(table)


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
    from privaudit.baseline import baseline_from_result, read_json

    document = baseline_from_result(read_json(result_file))
    write_text(json.dumps(document, indent=2) + "\n", output)
    if output is not None:
        err_console.print(f"baseline of {len(document['measurements'])} measurements written to {output}")


def write_text(text: str, output: Path | None) -> None:
    """Write to a file atomically, or to stdout.

    Raises:
        PrivauditError: when the file cannot be written (so the run exits 2, never 0 without its report).
    """
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(output.name + ".tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise PrivauditError(f"{output}: cannot write the report ({err.strerror or err})") from err


def main() -> None:
    """Console-script entry point."""
    app()


# Commands that live in their own modules register themselves on `app` when imported.
from privaudit import cli_canary  # noqa: E402, F401

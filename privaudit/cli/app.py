"""The ``privaudit`` command line: thin wrappers that parse flags, call the library, and report.

This module holds the typer app, the group that turns errors into exit codes, and ``main``; each command lives in
its own module (``train``, ``mia``, ``canary``, ``baseline``), which :mod:`privaudit.cli` imports to register it.

Exit codes follow ruff and mypy: 0 all gates passed, 1 a leak over a threshold, 2 the run could not complete.
"""

from __future__ import annotations

import inspect
import sys
import traceback
from typing import Annotated

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from privaudit import __version__
from privaudit.cli.console import err_console
from privaudit.errors import PrivauditError

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


def _keep_option_names_whole() -> None:
    """Keep option names whole in ``--help`` at any width.

    typer's options panel is a Rich table whose columns it creates row by row, all wrappable; at 80 columns Rich
    shrinks the widest columns to one width, so a long flag beside a long help text came out as
    ``--fail-if-bound-excee…``. Marking the name columns ``no_wrap`` makes Rich shrink the help text instead, whose long
    words then fold onto the next line rather than end in an ellipsis. A small
    subclass of the table typer's panel builds (its own ``add_column`` calls, as the commands panel makes, are left
    alone); if a typer release stops building panels this way, help keeps working and only the names may be cut.
    """
    from rich.table import Table
    from rich.text import Text
    from typer import rich_utils

    class OptionsTable(Table):
        def add_row(self, *renderables, **kwargs):
            implicit = not self.columns
            if implicit and renderables:  # the options panel: [required mark,] long names, short names, ... help
                # Its help cell is a Columns of Texts: a long word (a metric's name) folds onto the next line.
                for item in getattr(renderables[-1], "renderables", ()):
                    if isinstance(item, Text):
                        item.overflow = "fold"
            super().add_row(*renderables, **kwargs)
            if implicit:
                for column in self.columns[:3]:
                    column.no_wrap = True

    if getattr(rich_utils, "Table", None) is Table:
        rich_utils.Table = OptionsTable


_keep_option_names_whole()


def tidy_help(text: str | None) -> str | None:
    """A command's help as Rich should wrap it: prose paragraphs on one line, indented examples kept line by line.

    typer keeps a docstring's single line breaks, so prose wrapped at 120 columns in the source came out ragged at 80;
    examples (indented paragraphs, continued with a backslash) must keep theirs, to stay copyable command lines.
    """
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.split("\n")
        if all(line.startswith("    ") for line in lines if line.strip()):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _traceback_if_debug() -> None:
    """With ``--debug``, the traceback of the exception being handled, on stderr, before its one line.

    ``--debug`` adds the traceback and changes nothing else: the line and the exit code stay those of a run without it.
    """
    if state["debug"]:
        traceback.print_exc(file=sys.stderr)


class _Group(TyperGroup):
    """Turns errors into one clear line and exit code 2, for the console script and for tests alike."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            command.help = tidy_help(command.help)
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except PrivauditError as err:
            _traceback_if_debug()
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from err
        except KeyboardInterrupt as err:
            err_console.print("interrupted")
            raise typer.Exit(2) from err
        except Exception as err:  # a bug or an unexpected library failure: exit 2, never a silent 0
            _traceback_if_debug()
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


def main() -> None:
    """Console-script entry point."""
    app()

"""Help that copy-pastes: every example in every command's ``--help`` is one whole command at 80 and 120 columns.

An example stays on one line or breaks only after a shell continuation (``\\``). Each is read back from the rendered
help the way a user copies it (lines joined on ``\\``), split by the shell's rules (:mod:`shlex`), and checked: it
starts with ``privaudit COMMAND``, every flag it uses is one of that command's, and the line after it is blank or
another example, not the rest of a command the terminal wrapped.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from privaudit.cli.app import app

ROOT = typer.main.get_command(app)


def _is_group(command: Any) -> bool:
    # Typer's groups are its own click's (typer may ship its own), so asked by what they hold, not by class.
    return hasattr(command, "commands")


def _commands(group: Any = ROOT, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        found.append((*path, name))
        if _is_group(command):
            found += _commands(command, (*path, name))
    return found


COMMANDS = _commands()


def _resolve(tokens: list[str]) -> tuple[Any, list[str]]:
    """The command an example runs, from its tokens after ``privaudit``, and the tokens past the command's name."""
    command = ROOT
    rest = list(tokens)
    while _is_group(command) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def _flags(command: Any) -> set[str]:
    return {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}


def examples(prose: str) -> list[tuple[str, str | None]]:
    """Each example as copied (its lines joined on ``\\``), and the line after it (``None`` at the end)."""
    lines = prose.splitlines()
    found, i = [], 0
    while i < len(lines):
        if not lines[i].strip().startswith("privaudit "):
            i += 1
            continue
        parts = []
        while True:
            line = lines[i].strip()
            i += 1
            if line.endswith("\\") and i < len(lines):
                parts.append(line[:-1].strip())
                continue
            parts.append(line)
            break
        found.append((" ".join(parts), lines[i].strip() if i < len(lines) else None))
    return found


def _help(path: tuple[str, ...], width: int) -> str:
    env = {"COLUMNS": str(width), "NO_COLOR": "1"}
    result = CliRunner().invoke(app, [*path, "--help"], env=env, terminal_width=width)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered():
    assert {"train", "epsilon", "mia", "attacks", "canary", "dp-audit", "sweep", "baseline"} <= {c[0] for c in COMMANDS}
    assert ("baseline", "save") in COMMANDS


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_examples_are_whole_commands(path, width):
    output = _help(path, width)
    prose = output.split("╭")[0]
    assert all(len(line) <= width for line in prose.splitlines())
    for example, after in examples(prose):
        tokens = shlex.split(example)  # raises on an unbalanced quote
        assert tokens[0] == "privaudit", example
        command, rest = _resolve(tokens[1:])
        assert command is not ROOT, f"{example!r} names no command"
        flags = _flags(command)
        unknown = [t.split("=")[0] for t in rest if t.startswith("-") and t.split("=")[0] not in flags]
        assert not unknown, f"{example!r}: {unknown} are not flags of 'privaudit {command.name}'"
        # The line after a whole command is blank or the next one; anything else is the command's wrapped tail.
        assert after in (None, "") or after.startswith("privaudit "), f"{example!r} wraps into {after!r}"


def test_the_reader_catches_a_wrapped_example():
    wrapped = "\n     privaudit train fixtures/data/members.jsonl --out model --dp\n --target-epsilon 8\n\n"
    [(example, after)] = examples(wrapped)
    assert after == "--target-epsilon 8"
    continued = "\n     privaudit train data.jsonl --out model \\\n         --dp --target-epsilon 8\n\n"
    assert examples(continued) == [("privaudit train data.jsonl --out model --dp --target-epsilon 8", "")]


def test_long_flags_keep_their_whole_names_at_80_columns():
    # Rich shrank the options table's widest columns to one width, cutting "--fail-if-bound-exceeds-epsilon" short
    from typer.testing import CliRunner

    from privaudit.cli.app import app

    for command in ("dp-audit", "canary", "mia"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}).stdout
        rows = [line for line in out.splitlines() if line.startswith("│ --fail-if-bound")]  # the Gate panel's row
        assert len(rows) == 1 and "│ --fail-if-bound-exceeds-epsilon " in rows[0], (command, rows)

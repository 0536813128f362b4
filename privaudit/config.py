"""Configuration files: ``[tool.privaudit]`` in ``pyproject.toml``, or ``privaudit.toml`` with the same keys.

As with ruff, the file is found by walking up from the current directory: in each directory ``privaudit.toml``
wins, then a ``pyproject.toml`` that has a ``[tool.privaudit]`` table; ``--config FILE`` names one instead (read
as a ``pyproject.toml`` when it is called that, else as a ``privaudit.toml``). One table per command holds defaults
for its flags, under the flag's name with ``_`` or ``-``::

    [tool.privaudit.mia]            # [mia] in privaudit.toml
    attack = ["loss", "lira-offline"]
    members = "data/members.jsonl"  # relative paths are relative to the config file
    fail_above = { "auc" = 0.6, "lira-offline:tpr@1%fpr" = 0.05 }
    fail_if_bound_exceeds_epsilon = true

    [tool.privaudit.canary]         # [canary] in privaudit.toml
    canaries = "models/target.canaries.jsonl"
    fail_above = { "exposure" = 10, "extracted" = 0 }

    [tool.privaudit.dp-audit]       # [dp-audit] in privaudit.toml; dp_audit works too
    scores = "audit/canary-scores.jsonl"
    epsilon = 8.0
    fail_if_bound_exceeds_epsilon = true

Flags given on the command line win. The defaults reach the command through click's ``default_map`` (set by the
eager ``--config`` option, see :func:`apply_config`), so every flag keeps its own type checks; the threshold tables
(``fail_above``, ``max_increase``) are merged key by key with the flags by the command instead, so
``--fail-above auc=0.5`` replaces the file's ``auc`` and keeps its other thresholds. An unknown key or a value of the
wrong type is a :class:`~privaudit.errors.PrivauditError` (exit 2) naming the file and the key. ``allow_pickle``
is deliberately not a key: loading code from a pickle must be asked for on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import typer

from privaudit.config_keys import COMMAND_KEYS
from privaudit.errors import PrivauditError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_NAMES = ("privaudit.toml", "pyproject.toml")
META_KEY = "privaudit.config"


@dataclass(frozen=True)
class CommandConfig:
    """One command's table, checked.

    Attributes:
        path: the file it came from.
        section: the table's dotted key in that file, e.g. ``tool.privaudit.mia``, for messages.
        defaults: click parameter name to value, for ``ctx.default_map``.
        fail_above: the ``fail_above`` table, key to limit.
        max_increase: the ``max_increase`` table, key to allowed increase.
    """

    path: Path | None = None
    section: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    fail_above: dict[str, float] = field(default_factory=dict)
    max_increase: dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """``pyproject.toml tool.privaudit.mia``, for messages and the report's threshold sources."""
        return f"{self.path} {self.section}" if self.path is not None else ""


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``privaudit.toml``, or ``pyproject.toml`` with ``[tool.privaudit]``, from ``start`` upwards.

    Raises:
        PrivauditError: when a ``pyproject.toml`` on the way is not valid TOML.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        own = directory / "privaudit.toml"
        if own.is_file():
            return own
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and "privaudit" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def load_config(path: Path, command: str) -> CommandConfig:
    """Read and check one command's table of a config file.

    Args:
        path: a ``pyproject.toml`` (keys under ``[tool.privaudit]``) or a ``privaudit.toml`` (keys at the top).
        command: the command whose table to return, e.g. ``"mia"``.

    Returns:
        The checked table; empty when the file has none for ``command``.

    Raises:
        PrivauditError: when the file cannot be read or parsed, or has an unknown table or key or a bad value.
    """
    data = _read_toml(path)
    prefix = "tool.privaudit." if path.name == "pyproject.toml" else ""
    if prefix:
        data = data.get("tool", {}).get("privaudit", {})
    if not isinstance(data, dict):
        raise PrivauditError(f"{path}: {prefix[:-1]} must be a table")
    for name, table in data.items():
        if _key(name) not in COMMAND_KEYS:
            known = ", ".join(f"{prefix}{c}" for c in COMMAND_KEYS)
            raise PrivauditError(f"{path}: unknown key {prefix}{name}; privaudit reads the tables {known}")
        if not isinstance(table, dict):
            raise PrivauditError(f"{path}: {prefix}{name} must be a table")
    # Messages name keys by their dotted path, not [table]: a Rich console would read [..] as markup.
    section = f"{prefix}{command}"
    config = CommandConfig(path=path, section=section)
    tables = [t for n, t in data.items() if _key(n) == command]
    keys = COMMAND_KEYS.get(command, {})
    seen: set[str] = set()
    for key, value in (tables[0] if tables else {}).items():
        name = _key(key)
        if name not in keys:
            raise PrivauditError(f"{path}: unknown key {section}.{key}; valid keys: {', '.join(sorted(keys))}")
        if name in seen:
            raise PrivauditError(f"{path}: {section}.{key} is given twice (with '_' and with '-')")
        seen.add(name)
        try:
            checked = keys[name].check(value, path.parent)
        except ValueError as err:
            raise PrivauditError(f"{path}: {section}.{key}: {err}") from None
        if name in ("fail_above", "max_increase"):
            getattr(config, name).update(checked)
        else:
            config.defaults[keys[name].param] = checked
    return config


def apply_config(ctx: click.Context, path: Path | None, command: str) -> CommandConfig:
    """Load ``path`` (or the one :func:`find_config` finds) into ``ctx``: flag defaults and thresholds.

    Called by the eager ``--config`` option before click reads the other flags, so the file's values become
    their defaults. The whole :class:`CommandConfig` is kept in ``ctx.meta[META_KEY]`` for the thresholds.
    """
    if path is not None and not path.is_file():
        raise PrivauditError(f"{path}: --config names no file")
    found = path if path is not None else find_config()
    config = load_config(found, command) if found is not None else CommandConfig()
    ctx.default_map = {**(ctx.default_map or {}), **config.defaults}
    ctx.meta[META_KEY] = config
    return config


def config_option(command: str) -> Any:
    """The eager ``--config FILE`` option of a command, for its signature::

        config: Annotated[Path | None, config_option("canary")] = None

    Its callback runs :func:`apply_config` before click reads the other flags, so the file's values become their
    defaults; it runs whether or not ``--config`` is given, to find the file when it is not.
    """

    def load(ctx: typer.Context, value: Path | None) -> Path | None:
        apply_config(ctx, value, command)
        return value

    return typer.Option(
        "--config",
        is_eager=True,
        callback=load,
        help="Config file (default: the nearest privaudit.toml, or pyproject.toml with \\[tool.privaudit]).",
        rich_help_panel="Gate",
    )


def value_source(ctx: click.Context, param: str, flag: str) -> str:
    """Where a flag's value came from, for the report: ``flag``, or ``pyproject.toml tool.privaudit.mia.param``."""
    source = ctx.get_parameter_source(param)
    if source is not None and source.name == "DEFAULT_MAP":  # by name: typer bundles its own copy of click
        return f"{ctx.meta[META_KEY].source}.{param}"
    return flag


def _key(name: str) -> str:
    return name.replace("-", "_")


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as err:
        raise PrivauditError(f"{path}: cannot read the config file ({err.strerror})") from err
    except tomllib.TOMLDecodeError as err:
        raise PrivauditError(f"{path}: not valid TOML ({err})") from err

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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import typer

from privaudit.errors import PrivauditError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_NAMES = ("privaudit.toml", "pyproject.toml")
META_KEY = "privaudit.config"

# A key's value checker: returns the value to hand to click, or raises ValueError with what was expected.
Checker = Callable[[Any, Path], Any]


def _path(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a path (a non-empty string)")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _string(value: Any, base: Path) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _int(minimum: int | None = None) -> Checker:
    def check(value: Any, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
        if minimum is not None and value < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return value

    return check


def _float(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("expected a number")
    return float(value)


def _bool(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _names(value: Any, base: Path) -> str:
    """An attack list: ``"loss,rmia"`` or ``["loss", "rmia"]``, handed to click as the comma-separated flag."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ValueError("expected a string or a non-empty list of strings")


def _list_of_names(value: Any, base: Path) -> list[str]:
    """A repeatable flag's values: ``"class"`` or ``["class", "correctness"]``, handed to click as repeated flags."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError('expected a name or a list of names, e.g. ["class", "correctness"]')
    return [v.strip() for v in items]


def _attack_options(value: Any, base: Path) -> list[str]:
    """Attack parameters: ``{ "rmia:a" = 0.5 }``, handed to click as repeated ``--attack-option rmia:a=0.5``."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and ":" in k for k in value):
        raise ValueError('expected a table of ATTACK:PARAM to values, e.g. { "rmia:a" = 0.5 }')
    for key, setting in value.items():
        if not isinstance(setting, bool | int | float | str):
            raise ValueError(f"'{key}' must be a number, true/false or a string, got {setting!r}")
    return [f"{key}={str(v).lower() if isinstance(v, bool) else v}" for key, v in value.items()]


def _thresholds(value: Any, base: Path) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError('expected a table of METRIC or ATTACK:METRIC to numbers, e.g. { "auc" = 0.6 }')
    for key, limit in value.items():
        try:
            _float(limit, base)
        except ValueError:
            raise ValueError(f"'{key}' must be a number, got {limit!r}") from None
    return {key: float(limit) for key, limit in value.items()}


def _choice(*choices: str) -> Checker:
    def check(value: Any, base: Path) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return check


@dataclass(frozen=True)
class Key:
    """A config key: the click parameter it sets (``None``: read by the command, not a flag default) and its check."""

    param: str | None
    check: Checker


REPORT_FORMATS = ("table", "json", "junit", "sarif", "github", "markdown")


def _headers(value: Any, base: Path) -> list[str]:
    """Endpoint headers: ``{ Authorization = "@ENVVAR" }``, handed to click as repeated ``--header NAME=@ENVVAR``."""
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.startswith("@") for v in value.values()):
        # Never quote the value: a literal here may be the secret itself.
        raise ValueError('expected a table of header names to "@ENVVAR" (values are read from the environment)')
    return [f"{name}={source}" for name, source in value.items()]


# Keys of the endpoint flags (mia, canary). --insecure is deliberately not a key: it must be asked for on the command
# line, as --allow-pickle.
ENDPOINT_KEYS: dict[str, Key] = {
    "endpoint": Key("endpoint", _string),
    "endpoint_format": Key("endpoint_format", _choice("v2", "hf")),
    "endpoint_labels": Key("endpoint_labels", _names),
    "endpoint_batch": Key("endpoint_batch", _int(minimum=1)),
    "concurrency": Key("concurrency", _int(minimum=1)),
    "endpoint_timeout": Key("endpoint_timeout", _float),
    "endpoint_retries": Key("endpoint_retries", _int(minimum=0)),
    "max_queries": Key("max_queries", _int(minimum=0)),
    "headers": Key("header", _headers),
    "endpoint_cache": Key("endpoint_cache", _path),
}

# Keys every gated command shares (mia, canary).
GATE_KEYS: dict[str, Key] = {
    "fail_above": Key(None, _thresholds),
    "max_increase": Key(None, _thresholds),
    "fail_if_bound_exceeds_epsilon": Key("fail_if_bound_exceeds_epsilon", _bool),
    "baseline": Key("baseline", _path),
    "save_baseline": Key("save_baseline", _path),
    "format": Key("output_format", _choice(*REPORT_FORMATS)),
    "output": Key("output", _path),
    "json_out": Key("json_out", _path),
    "junit_out": Key("junit_out", _path),
    "sarif_out": Key("sarif_out", _path),
    "markdown_out": Key("markdown_out", _path),
    "seed": Key("seed", _int()),
}

# Where models run: every command that loads one (mia, canary, and dp-audit when it registers).
COMPUTE_KEYS: dict[str, Key] = {
    "device": Key("device", _string),
    "precision": Key("precision", _choice("fp32", "bf16", "fp16")),
}
# How mia trains its reference models.
EXECUTOR_KEYS: dict[str, Key] = {
    "executor": Key("executor", _choice("local", "ray")),
    "ray_address": Key("ray_address", _string),
    "workers": Key("workers", _int(minimum=1)),
    "cpus_per_job": Key("cpus_per_job", _int(minimum=1)),
    "gpus_per_job": Key("gpus_per_job", _float),
    "max_retries": Key("max_retries", _int(minimum=0)),
}

COMMAND_KEYS: dict[str, dict[str, Key]] = {
    "mia": {
        **GATE_KEYS,
        **ENDPOINT_KEYS,
        "model": Key("model_dir", _path),
        "members": Key("members", _path),
        "non_members": Key("non_members", _path),
        "population": Key("population", _path),
        "attack": Key("attack", _names),
        "attack_options": Key("attack_option", _attack_options),
        "reference_models": Key("reference_models", _int(minimum=0)),
        "train_config": Key("train_config", _path),
        "scores": Key("scores", _path),
        "epsilon": Key("epsilon", _float),
        "delta": Key("delta", _float),
        "report": Key("report", _path),
        "batch_size": Key("batch_size", _int(minimum=1)),
        "cache_dir": Key("cache_dir", _path),
        "slice": Key("slice_kind", _list_of_names),
        "slice_min": Key("slice_min", _int(minimum=2)),
        "per_example": Key("per_example", _path),
        "top": Key("top", _int(minimum=0)),
        "redact_texts": Key("redact_texts", _bool),
        **COMPUTE_KEYS,
        **EXECUTOR_KEYS,
    },
    "canary": {
        **GATE_KEYS,
        **ENDPOINT_KEYS,
        "model": Key("model_dir", _path),
        "canaries": Key("canaries", _path),
        "attack": Key("attack", _names),
        "attack_options": Key("attack_option", _attack_options),
        "exposure": Key("exposure", _bool),
        "extract": Key("extract", _bool),
        "one_run": Key("one_run", _bool),
        "sample": Key("sample", _int(minimum=100)),
        "epsilon": Key("epsilon", _float),
        "delta": Key("delta", _float),
        "steps": Key("steps", _int(minimum=1)),
        "restarts": Key("restarts", _int(minimum=1)),
        "report": Key("report", _path),
        "batch_size": Key("batch_size", _int(minimum=1)),
        **COMPUTE_KEYS,
    },
    "dp_audit": {  # [tool.privaudit.dp-audit] (or dp_audit); the analysis draws nothing, so no seed
        **{name: key for name, key in GATE_KEYS.items() if name != "seed"},
        "model": Key("model_dir", _path),
        "scores": Key("scores", _path),
        "canaries": Key("canaries", _path),
        "epsilon": Key("epsilon", _float),
        "delta": Key("delta", _float),
        "alpha": Key("alpha", _float),
        "one_sided": Key("one_sided", _bool),
        "batch_size": Key("batch_size", _int(minimum=1)),
    },
}


def register_command(command: str, keys: dict[str, Key]) -> None:
    """Declare the config table of another command, e.g. ``register_command("canary", {**GATE_KEYS, ...})``."""
    COMMAND_KEYS[command] = keys


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

"""The keys of each command's config table and how each value is checked (read by :mod:`privaudit.config`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        "group_by": Key("group_by", _string),
        "group_aggregate": Key("group_aggregate", _choice("auto", "mean", "max", "logsumexp", "top-k-mean")),
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
        "fail_if_estimate_exceeds_epsilon": Key("fail_if_estimate_exceeds_epsilon", _bool),
        "model": Key("model_dir", _path),
        "scores": Key("scores", _path),
        "canaries": Key("canaries", _path),
        "canary_kind": Key("canary_kind", _choice("auto", "audit", "gradient", "data")),
        "base": Key("base", _path),
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

"""Baselines: an audit's measurements saved to a file, so later runs fail only on regressions.

A baseline is a small JSON document (``"schema": "privaudit.baseline/1"``) holding every measurement of one audit
(subject, metric, value, interval) and where it came from. It is written by ``privaudit baseline save RESULT.json``
or ``privaudit mia --save-baseline FILE`` (``privaudit canary --save-baseline FILE``) and read by ``--baseline FILE``
with ``--max-increase METRIC=VALUE``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from privaudit import __version__
from privaudit.errors import PrivauditError
from privaudit.gate.measurements import (
    Measurement,
    measurements_from_canary_dict,
    measurements_from_dp_audit_dict,
    measurements_from_mia_dict,
)
from privaudit.ranges import check_measured

SCHEMA = "privaudit.baseline/1"

# Result documents a baseline can be made from, by their "schema" field.
READERS: dict[str, Callable[[Mapping], list[Measurement]]] = {
    "privaudit.mia/1": measurements_from_mia_dict,
    "privaudit.canary/1": measurements_from_canary_dict,
    "privaudit.dp-audit/1": measurements_from_dp_audit_dict,
}


def baseline_document(measurements: Sequence[Measurement], *, source: Mapping) -> dict:
    """The baseline JSON document.

    Args:
        measurements: the audit's measurements.
        source: what was audited: the result's ``schema``, ``model`` and ``seed``.
    """
    return {
        "schema": SCHEMA,
        "tool": {"name": "privaudit", "version": __version__},
        "source": dict(source),
        "measurements": [m.to_dict() for m in measurements],
    }


def baseline_from_result(document: Mapping) -> dict:
    """A baseline from a result document: the output of ``privaudit mia --format json`` or ``privaudit canary ...``.

    Raises:
        PrivauditError: when the document is of a kind no reader knows.
    """
    kind = document.get("schema") if isinstance(document, Mapping) else None
    reader = READERS.get(kind)
    if reader is None:
        raise PrivauditError(
            f"cannot make a baseline from a document with schema {kind!r}; expected one of {', '.join(READERS)}"
        )
    source = {"schema": kind, "model": document.get("model"), "seed": document.get("seed")}
    return baseline_document(reader(document), source=source)


def read_json(path: Path) -> dict:
    """A JSON file, or a :class:`PrivauditError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise PrivauditError(f"{path}: cannot read ({err.strerror})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PrivauditError(f"{path}: not valid JSON ({err})") from err


def load_baseline(path: Path) -> list[Measurement]:
    """The measurements of a baseline file.

    Raises:
        PrivauditError: when the file is missing, not JSON, or not a ``privaudit.baseline/1`` document.
    """
    document = read_json(path)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        hint = " (a result file: turn it into a baseline with 'privaudit baseline save')" if found in READERS else ""
        raise PrivauditError(f"{path}: not a {SCHEMA} baseline (schema {found!r}){hint}")
    out = []
    for i, m in enumerate(document.get("measurements", [])):
        try:
            subject, metric = str(m["subject"]), str(m["metric"])
            value, low, high = m["value"], m.get("low"), m.get("high")
        except (KeyError, TypeError) as err:
            raise PrivauditError(f"{path}: measurement {i} is malformed (field {err})") from err
        where = f"{path}: measurement {i} ({subject} {metric})"
        value, low, high = (
            None if x is None else check_measured(metric, x, where=f"{where} field '{name}'")
            for name, x in (("value", value), ("low", low), ("high", high))
        )
        out.append(Measurement(subject, metric, value, low, high))
    return out

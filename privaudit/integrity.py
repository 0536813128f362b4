"""Cache entries that check themselves: a content record written with each entry, verified when it is read.

A cache entry (a reference model, a sweep point's model) is a directory written whole and renamed into place. Beside
its files it holds :data:`ENTRY_RECORD`, the SHA-256 of each of them. Reading an entry verifies the record; an entry
that fails (a truncated file, one zeroed or with flipped bytes, a missing one) is moved aside with one warning line
naming it, and the caller rebuilds it. Nothing is deleted: the damaged copy stays for whoever wants to look at it.

Ground floor: imports only :mod:`privaudit.errors`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ENTRY_RECORD = "privaudit-entry.json"
ASIDE_SUFFIX = ".damaged"


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and p.name != ENTRY_RECORD)


def write_entry_record(directory: Path, *, beside: Sequence[Path] = ()) -> None:
    """Record the SHA-256 of every file in ``directory`` in its :data:`ENTRY_RECORD` (call it before publishing).

    Args:
        directory: the entry.
        beside: files outside the entry that belong to it (a sweep point's canary file), recorded by their path
            relative to the entry.
    """
    directory = Path(directory)
    record = {
        "files": {p.name: sha256_file(p) for p in _files(directory)},
        "beside": {os.path.relpath(p, directory): sha256_file(p) for p in beside},
    }
    (directory / ENTRY_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def entry_problem(directory: Path) -> str | None:
    """What is wrong with a cache entry's files against its record, or ``None`` when every file is as written.

    An entry written before records existed (no :data:`ENTRY_RECORD`) has nothing to check here: ``None``.
    """
    record_file = Path(directory) / ENTRY_RECORD
    if not record_file.exists():
        return None
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        files, beside = record["files"], record.get("beside", {})
        if not isinstance(files, dict) or not isinstance(beside, dict):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return f"its record {ENTRY_RECORD} is damaged"
    for name, expected in [*sorted(files.items()), *sorted(beside.items())]:
        file = Path(directory) / str(name)
        if not file.is_file():
            return f"{name} is missing"
        if sha256_file(file) != expected:
            return f"{name} does not match its recorded SHA-256 (truncated or overwritten)"
    return None


def warn(line: str) -> None:
    """One warning line on stderr (never stdout, where a ``--format json`` report may go)."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


def move_aside(path: Path, problem: str, *, what: str, then: str = "rebuilding it") -> Path | None:
    """Move a damaged cache entry out of the way (``NAME.damaged-TIMESTAMP``) with one warning line naming it.

    Returns:
        Where it went, or ``None`` when another process moved or replaced it first (nothing to do then).
    """
    path = Path(path)
    aside = path.with_name(f"{path.name}{ASIDE_SUFFIX}-{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 10**6}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return None
    except OSError as err:
        warn(f"{path}: damaged {what} ({problem}) and it cannot be moved aside ({err.strerror}); {then} in place")
        return None
    warn(f"{path}: damaged {what} ({problem}); moved aside to {aside.name}, {then}")
    return aside

"""``--per-example FILE``: one JSON line per audited example (``docs/schema-per-example.json``), written atomically."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from privaudit.errors import PrivauditError
from privaudit.mia.records import example_rows
from privaudit.mia.run import MiaResult


def write_per_example(result: MiaResult, path: Path) -> None:
    """Write the audit's per-example rows as JSONL: to a temporary file beside ``path``, then moved into place.

    A failure leaves ``path`` as it was (absent or the previous file) and no temporary file behind.

    Raises:
        PrivauditError: when the result holds no per-example data or the file cannot be written.
    """
    if result.examples is None:
        raise PrivauditError("--per-example: this audit holds no per-example data")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as handle:
            for row in example_rows(result):
                handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise PrivauditError(f"{path}: cannot write the per-example file ({err.strerror or err})") from err

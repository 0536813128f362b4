"""Reading a user's text file: UTF-8 or one line naming the file, the byte offset and the line.

Ground floor: imports only :mod:`privaudit.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from privaudit.errors import PrivauditError


def read_utf8(path: Path, *, what: str, bom: bool = False) -> str:
    """The file's text, decoded as UTF-8 (``bom``: a leading byte-order mark is dropped, as spreadsheets write one).

    Args:
        path: the file.
        what: what the file is, for the message (``"canary file"``).
        bom: accept and drop a UTF-8 byte-order mark.

    Raises:
        PrivauditError: the file cannot be read, or is not UTF-8: the message names the file, the offset of the
            first bad byte and its line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PrivauditError(f"{path}: cannot read the {what} ({err.strerror or err})") from err
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise PrivauditError(
            f"{path}: byte 0x{raw[err.start]:02x} at offset {err.start} (line {line}) is not UTF-8; the {what} must be "
            "UTF-8 text"
        ) from None


def json_lines(path: Path, *, what: str, hint: str = "", bom: bool = False) -> Iterator[tuple[str, object]]:
    """Each non-blank line of a JSONL file, parsed: ``(where, value)`` with ``where`` = ``"FILE:LINE"``.

    Lines end at ``\\n`` only (``\\r\\n`` too: JSON ignores the ``\\r``): a JSON string may hold U+2028, U+0085 and
    the like raw, and ``str.splitlines`` would cut the record there.

    Args:
        path: the file.
        what: what the file is, for the messages (``"scores file"``).
        hint: appended to the not-JSON message, e.g. ``"; each line is {...}"``.
        bom: accept and drop a UTF-8 byte-order mark.

    Raises:
        PrivauditError: as :func:`read_utf8`, or ``FILE:LINE: not JSON (why)`` and the hint.
    """
    path = Path(path)
    return parse_json_lines(path, read_utf8(path, what=what, bom=bom), hint=hint)


def parse_json_lines(path: Path, text: str, *, hint: str = "") -> Iterator[tuple[str, object]]:
    """:func:`json_lines` of a file's text already read (``path`` names it in the messages)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise PrivauditError(f"{where}: not JSON ({err.msg}){hint}") from None
        yield where, value

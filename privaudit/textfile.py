"""Reading a user's text file: UTF-8 or one line naming the file, the byte offset and the line.

Ground floor: imports only :mod:`privaudit.errors`.
"""

from __future__ import annotations

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

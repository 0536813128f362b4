"""``--scores FILE``: audit precomputed outputs of any framework's model, as TensorFlow Privacy's array input allows.

One record per audited example, JSONL or CSV:

- ``member``: 1/0 or true/false, required;
- ``logits``: the model's logits (a JSON list; in CSV a JSON list in one cell) with ``label`` (an integer id):
  every logits-based attack can then run;
- or ``score``: a ready membership score (higher = more likely a member), audited as the attack ``precomputed``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.mia.signals import Signals
from privaudit.textfile import parse_json_lines, read_utf8

TRUE = {"1", "true", "yes", "member", "in"}
FALSE = {"0", "false", "no", "non-member", "out"}


def _records(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise PrivauditError(f"{path}: no such scores file")
    raw = read_utf8(path, what="scores file")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(raw.splitlines())
        return [(reader.line_num, row) for row in reader]
    out = []
    for where, record in parse_json_lines(path, raw):
        if not isinstance(record, dict):
            raise PrivauditError(f'{where}: a record must be a JSON object, e.g. {{"member": 1, ...}}')
        out.append((int(where.rsplit(":", 1)[1]), record))
    return out


def _member(value: object, where: str) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise PrivauditError(f"{where}: 'member' must be 1/0 or true/false, got {value!r}")


def _finite(value: object, where: str) -> float:
    """A finite number, from JSON or a CSV cell."""
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not np.isfinite(number):
        raise PrivauditError(f"{where} must be a finite number, got {value!r}")
    return float(number)


def _logits(value: object, where: str) -> list[float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise PrivauditError(f"{where}: 'logits' must be a JSON list of numbers, got {value[:40]!r}") from None
    if not isinstance(value, list) or not value:
        raise PrivauditError(f"{where}: 'logits' must be a list of numbers, got {str(value)[:40]!r}")
    return [_finite(x, f"{where}: 'logits' item {i}") for i, x in enumerate(value)]


def _label(value: object, where: str) -> int:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lstrip("-").isdigit():
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int):
        raise PrivauditError(f"{where}: 'label' must be a class id (0, 1, ...), got {value!r}")
    return text


def read_scores(path: str | Path) -> tuple[Signals | None, np.ndarray, np.ndarray | None]:
    """Signals (``None`` without logits), membership and (when given) precomputed scores from a scores file.

    Raises:
        PrivauditError: missing file or columns, mixed record kinds, ragged logits, too few examples on a side.
    """
    path = Path(path)
    records = _records(path)
    if not records:
        raise PrivauditError(f"{path}: no records")
    first = records[0][1]
    has_logits, has_score = "logits" in first, "score" in first
    if "member" not in first or not (has_logits or has_score):
        raise PrivauditError(
            f"{path}: each record needs 'member' and either 'logits' with 'label', or 'score'; "
            f"found columns: {', '.join(sorted(first))}"
        )
    members, logits, labels, scores = [], [], [], []
    for number, rec in records:
        where = f"{path}:{number}"
        needed = ["member"] + (["logits", "label"] if has_logits else []) + (["score"] if has_score else [])
        missing = [k for k in needed if rec.get(k) in (None, "")]
        if missing:
            raise PrivauditError(f"{where}: missing column '{missing[0]}'")
        members.append(_member(rec["member"], where))
        if has_logits:
            logits.append(_logits(rec["logits"], where))
            labels.append(_label(rec["label"], where))
        if has_score:
            scores.append(_finite(rec["score"], f"{where}: 'score'"))
    is_member = np.array(members, dtype=bool)
    if min(is_member.sum(), (~is_member).sum()) < 10:
        raise PrivauditError(f"{path}: an audit needs at least 10 members and 10 non-members")
    if has_logits:
        try:
            logit_array = np.array(logits, dtype=np.float64)
        except ValueError as err:
            raise PrivauditError(f"{path}: every 'logits' list must have the same length") from err
        label_array = np.array(labels, dtype=np.int64)
        if logit_array.ndim != 2 or label_array.min() < 0 or label_array.max() >= logit_array.shape[1]:
            raise PrivauditError(f"{path}: labels must be ids within the length of 'logits'")
        signals = Signals(logits=logit_array, labels=label_array)
    else:
        signals = None  # a ready score only: no attack has anything to read
    return signals, is_member, (np.array(scores) if has_score else None)

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

TRUE = {"1", "true", "yes", "member", "in"}
FALSE = {"0", "false", "no", "non-member", "out"}


def _records(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise PrivauditError(f"{path}: no such scores file")
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(raw.splitlines())
        return [(reader.line_num, row) for row in reader]
    out = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            try:
                out.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise PrivauditError(f"{path}:{number}: malformed JSON ({err.msg})") from err
    return out


def _member(value: object, where: str) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise PrivauditError(f"{where}: 'member' must be 1/0 or true/false, got {value!r}")


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
        try:
            members.append(_member(rec["member"], where))
            if has_logits:
                row = rec["logits"]
                logits.append(json.loads(row) if isinstance(row, str) else row)
                labels.append(int(rec["label"]))
            if has_score:
                scores.append(float(rec["score"]))
        except KeyError as err:
            raise PrivauditError(f"{where}: missing column {err}") from err
        except (TypeError, ValueError) as err:
            raise PrivauditError(f"{where}: bad value ({err})") from err
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

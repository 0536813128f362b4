"""Read and validate labelled text: JSONL or CSV with ``text`` and ``label`` columns, or the same records in memory.

Labels may be given by name (``"play_music"``) or by id (``3``); :func:`encode_labels` maps both through a model's
``label2id``. Every error names the file and, where there is one, the line; records in memory are named like
``<members>`` (see :func:`dataset_from_records`) and their position, ``<members>[3]``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.textfile import parse_json_lines, read_utf8

SUPPORTED = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class TextDataset:
    """Texts and their raw labels as read from one file.

    Attributes:
        path: the file the examples came from, or a name like ``<members>`` for records given in memory (for
            messages).
        texts: the utterances.
        labels: the raw labels, names (``str``) or ids (``int``), as written in the file.
        groups: each record's owner (e.g. a user id, as a string), read from the column named by ``group_by``;
            ``None`` when no column was asked for.
        group_by: the name of that column, or ``None``.
    """

    path: Path | str
    texts: tuple[str, ...]
    labels: tuple[str | int, ...]
    groups: tuple[str, ...] | None = None
    group_by: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def label_names(self) -> list[str]:
        """Distinct labels in order of first appearance, as strings."""
        return list(dict.fromkeys(str(label) for label in self.labels))


def read_dataset(path: str | Path | TextDataset, *, min_examples: int = 1, group_by: str | None = None) -> TextDataset:
    """Read a JSONL or CSV file of ``{"text", "label"}`` records.

    Args:
        path: a ``.jsonl`` (one JSON object per line) or ``.csv`` file with a header naming ``text`` and ``label``;
            or examples already read (from :func:`dataset_from_records`), which are only counted.
        min_examples: fewer examples than this is an error.
        group_by: a column naming each record's owner (``--group-by``, e.g. ``user_id``): every record must have
            it, a non-empty string or an integer, kept as a string.

    Returns:
        The examples, in file order.

    Raises:
        PrivauditError: missing or unreadable file, malformed line, missing field, empty text, too few examples.
    """
    if isinstance(path, TextDataset):
        _check_count(path.path, len(path), min_examples)
        if group_by is not None and (path.groups is None or path.group_by != group_by):
            raise PrivauditError(f"{path.path}: the records were read without their '{group_by}' field (--group-by)")
        return path
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"{path}: no such file; give a JSONL or CSV file with 'text' and 'label' fields")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise PrivauditError(f"{path}: unsupported file type '{suffix}'; use .jsonl or .csv")
    # bom: spreadsheet exports often start with a byte-order mark
    raw = read_utf8(path, what="data file", bom=True)
    records = _read_csv(path, raw, group_by) if suffix == ".csv" else _read_jsonl(path, raw, group_by)
    return _dataset(path, records, min_examples=min_examples, group_by=group_by)


def dataset_from_records(
    records: object, *, name: str, min_examples: int = 1, group_by: str | None = None
) -> TextDataset:
    """Examples given in memory: ``{"text", "label"}`` mappings, or a data frame with those columns.

    A data frame is recognised by its ``columns`` and ``to_dict`` (pandas' ``DataFrame``), so pandas is never
    imported here. The records are checked like the lines of a file.

    Args:
        records: an iterable of mappings with ``text`` and ``label`` keys, or a ``pandas.DataFrame`` with those
            columns; labels are names or integer ids (numpy integers included), as in a file.
        name: what the examples are called in messages, e.g. ``"<members>"``.
        min_examples: fewer examples than this is an error.
        group_by: a field naming each record's owner, as in :func:`read_dataset`.

    Raises:
        PrivauditError: not records, a record without ``text`` or ``label``, an empty text, a bad label, too few.
    """
    if hasattr(records, "columns") and hasattr(records, "to_dict"):
        if not {"text", "label"} <= {str(c) for c in records.columns}:
            raise PrivauditError(f"{name}: the data frame must have the columns 'text' and 'label'")
        records = records.to_dict("records")
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise PrivauditError(
            f"{name}: expected a file path, a list of {{'text', 'label'}} dicts or a pandas DataFrame, "
            f"not {type(records).__name__}"
        )
    found = []
    for i, record in enumerate(records):
        where = f"{name}[{i}]"
        if not isinstance(record, Mapping) or "text" not in record or "label" not in record:
            raise PrivauditError(f"{where}: each record needs both 'text' and 'label' fields")
        label = record["label"]
        if isinstance(label, numbers.Integral) and not isinstance(label, bool):
            label = int(label)  # numpy's integers, as a data frame's integer column gives them
        text, label = _check_record(where, record["text"], label)
        found.append((text, label, _group(where, record, group_by)))
    return _dataset(name, found, min_examples=min_examples, group_by=group_by)


def _dataset(
    path: Path | str, records: list[tuple[str, str | int, str | None]], *, min_examples: int, group_by: str | None
) -> TextDataset:
    """The dataset of checked ``(text, label, owner)`` records, after checking their count."""
    _check_count(path, len(records), min_examples)
    texts, labels, groups = zip(*records) if records else ((), (), ())
    return TextDataset(
        path=path,
        texts=tuple(texts),
        labels=tuple(labels),
        groups=None if group_by is None else tuple(groups),
        group_by=group_by,
    )


def _group(where: str, record: Mapping, group_by: str | None) -> str | None:
    """The record's owner under ``--group-by``, as a string; ``None`` when not grouping."""
    if group_by is None:
        return None
    value = record.get(group_by)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if not isinstance(value, str) or not value.strip():
        raise PrivauditError(
            f"{where}: --group-by '{group_by}' needs the field on every record, a non-empty string or an integer"
        )
    return value


def _check_count(path: Path | str, n: int, min_examples: int) -> None:
    if n < min_examples:
        what = "no examples" if not n else f"only {n} examples"
        raise PrivauditError(f"{path}: {what}; at least {min_examples} are needed")


def _check_record(where: str, text: object, label: object) -> tuple[str, str | int]:
    if not isinstance(text, str) or not text.strip():
        raise PrivauditError(f"{where}: 'text' must be a non-empty string")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise PrivauditError(f"{where}: 'label' must be a label name or an integer id")
    return text, label


def _read_jsonl(path: Path, raw: str, group_by: str | None = None) -> list[tuple[str, str | int, str | None]]:
    records = []
    hint = '; each line must be one object like {"text": "...", "label": "..."}'
    for where, obj in parse_json_lines(path, raw, hint=hint):
        if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
            raise PrivauditError(f"{where}: each line needs both 'text' and 'label' fields")
        text, label = _check_record(where, obj["text"], obj["label"])
        records.append((text, label, _group(where, obj, group_by)))
    return records


def _read_csv(path: Path, raw: str, group_by: str | None = None) -> list[tuple[str, str | int, str | None]]:
    if not raw.strip():
        return []  # an empty file has no examples, rather than a bad header
    reader = csv.DictReader(io.StringIO(raw, newline=""))  # keeps the line breaks of quoted multi-line fields
    if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
        raise PrivauditError(f"{path}: the CSV header must name the columns 'text' and 'label'")
    if group_by is not None and group_by not in reader.fieldnames:
        raise PrivauditError(f"{path}: the CSV header has no column '{group_by}' (--group-by)")
    records = []
    for row in reader:
        label: str | int = row["label"] if row["label"] is not None else ""
        if isinstance(label, str) and label.strip().lstrip("-").isdigit():
            label = int(label)
        text, label = _check_record(f"{path}:{reader.line_num}", row["text"], label)
        records.append((text, label, _group(f"{path}:{reader.line_num}", row, group_by)))
    return records


def encode_labels(dataset: TextDataset, label2id: Mapping[str, int]) -> np.ndarray:
    """Map the dataset's labels, by name or by id, to the model's label ids.

    Raises:
        PrivauditError: a label the model does not have, naming it and the model's labels.
    """
    n_labels = len(label2id)
    ids = np.empty(len(dataset), dtype=np.int64)
    for i, label in enumerate(dataset.labels):
        if isinstance(label, int):
            if not 0 <= label < n_labels:
                raise PrivauditError(
                    f"{dataset.path}: label id {label} is out of range; the model has ids 0..{n_labels - 1}"
                )
            ids[i] = label
        elif label in label2id:
            ids[i] = label2id[label]
        else:
            known = ", ".join(sorted(label2id)[:20])
            raise PrivauditError(f"{dataset.path}: unknown label '{label}'; the model's labels are: {known}")
    return ids


def fingerprint(texts: Sequence[str], labels: Sequence[object]) -> str:
    """A SHA-256 over the examples in order: identifies a training set without storing it."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(json.dumps([text, label], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()

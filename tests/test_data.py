"""Reading and validating labelled text (``privaudit/data.py``): every error names the file and, where there is one, the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from privaudit.data import TextDataset, dataset_from_records, encode_labels, fingerprint, read_dataset
from privaudit.errors import PrivauditError

LABEL2ID = {"get_weather": 0, "play_music": 1, "set_alarm": 2}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_in_file_order_with_labels_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"text": "play some jazz", "label": "play_music"}\n'
        "\n"  # blank lines are skipped
        '{"text": "rain in oslo?", "label": 0, "extra": "ignored"}\r\n'
        '{"label": "set_alarm", "text": "wake me at 7"}',  # no newline at the end
    )
    dataset = read_dataset(path)
    assert dataset == TextDataset(
        path=path,
        texts=("play some jazz", "rain in oslo?", "wake me at 7"),
        labels=("play_music", 0, "set_alarm"),
    )
    assert len(dataset) == 3
    assert dataset.label_names() == ["play_music", "0", "set_alarm"]


def test_jsonl_texts_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    # JSON allows U+2028 and U+0085 raw inside strings; they must not split the line.
    texts = ["first\u2028second", "a\x85b", "caf\u00e9 \u266b"]
    records = [json.dumps({"text": t, "label": "play_music"}, ensure_ascii=False) for t in texts]
    dataset = read_dataset(write(tmp_path / "d.jsonl", "\n".join(records) + "\n"))
    assert dataset.texts == tuple(texts)


def test_csv_with_names_ids_quoting_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        '\ufefftext,label,source\nplay some jazz,play_music,web\n"rain, or not?",0,app\n"two\nlines",set_alarm,app\n',
    )
    dataset = read_dataset(path)
    assert dataset.texts == ("play some jazz", "rain, or not?", "two\nlines")
    assert dataset.labels == ("play_music", 0, "set_alarm")  # a numeric CSV label is an id


def test_encode_labels_by_name_and_by_id(tmp_path: Path) -> None:
    dataset = TextDataset(
        path=tmp_path / "d.jsonl", texts=("a", "b", "c", "d"), labels=("set_alarm", 0, "play_music", 2)
    )
    ids = encode_labels(dataset, LABEL2ID)
    assert ids.dtype == np.int64
    assert ids.tolist() == [2, 0, 1, 2]


def test_unknown_label_names_it_and_the_models_labels(tmp_path: Path) -> None:
    dataset = TextDataset(path=tmp_path / "d.jsonl", texts=("a",), labels=("book_flight",))
    with pytest.raises(PrivauditError) as err:
        encode_labels(dataset, LABEL2ID)
    message = str(err.value)
    assert str(tmp_path / "d.jsonl") in message
    assert "'book_flight'" in message
    assert all(name in message for name in LABEL2ID)


@pytest.mark.parametrize("label", [3, -1])
def test_label_id_out_of_range(tmp_path: Path, label: int) -> None:
    dataset = TextDataset(path=tmp_path / "d.jsonl", texts=("a",), labels=(label,))
    with pytest.raises(PrivauditError, match=rf"label id {label} is out of range; the model has ids 0\.\.2"):
        encode_labels(dataset, LABEL2ID)


GOOD = '{"text": "play jazz", "label": "play_music"}\n'


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ('{"text": "unterminated, "label": "x"}', "not JSON"),
        ('["play jazz", "play_music"]', "needs both 'text' and 'label'"),
        ('{"text": "play jazz"}', "needs both 'text' and 'label'"),
        ('{"label": "play_music"}', "needs both 'text' and 'label'"),
        ('{"text": "   ", "label": "play_music"}', "'text' must be a non-empty string"),
        ('{"text": 7, "label": "play_music"}', "'text' must be a non-empty string"),
        ('{"text": "play jazz", "label": ""}', "'label' must be a label name or an integer id"),
        ('{"text": "play jazz", "label": true}', "'label' must be a label name or an integer id"),
        ('{"text": "play jazz", "label": 1.5}', "'label' must be a label name or an integer id"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, complaint: str) -> None:
    path = write(tmp_path / "d.jsonl", GOOD + "\n" + line + "\n" + GOOD)  # the bad record is on line 3
    with pytest.raises(PrivauditError) as err:
        read_dataset(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ")
    assert complaint in message


@pytest.mark.parametrize(
    ("row", "complaint"),
    [(",play_music", "'text' must be a non-empty string"), ("play jazz,", "'label' must be a label name")],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, row: str, complaint: str) -> None:
    path = write(tmp_path / "d.csv", 'text,label\n"multi\nline",play_music\n' + row + "\n")  # row is on line 4
    with pytest.raises(PrivauditError) as err:
        read_dataset(path)
    assert str(err.value).startswith(f"{path}:4: ")
    assert complaint in str(err.value)


def test_csv_without_text_and_label_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "utterance,intent\nplay jazz,play_music\n")
    with pytest.raises(PrivauditError, match="must name the columns 'text' and 'label'") as err:
        read_dataset(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.jsonl", ""),
        ("d.jsonl", "\n \n\t\n"),
        ("d.csv", ""),
        ("d.csv", "text,label\n"),
        ("d.csv", "text,label\n\n\n"),
    ],
)
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(PrivauditError, match="no examples; at least 1 are needed") as err:
        read_dataset(path)
    assert str(err.value).startswith(str(path))


def test_too_few_examples(tmp_path: Path) -> None:
    with pytest.raises(PrivauditError, match="only 1 examples; at least 2 are needed"):
        read_dataset(write(tmp_path / "d.jsonl", GOOD), min_examples=2)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", GOOD)
    with pytest.raises(PrivauditError, match=r"unsupported file type '\.txt'; use \.jsonl or \.csv") as err:
        read_dataset(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("make", [lambda p: p / "missing.jsonl", lambda p: p])  # absent, or a directory
def test_missing_file(tmp_path: Path, make) -> None:
    path = make(tmp_path)
    with pytest.raises(PrivauditError, match="no such file") as err:
        read_dataset(path)
    assert str(err.value).startswith(str(path))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes('{"text": "caf\u00e9", "label": "x"}\n'.encode("latin-1"))
    with pytest.raises(PrivauditError, match="must be UTF-8 text") as err:
        read_dataset(path)
    assert str(err.value).startswith(str(path))


def test_fingerprint_is_stable_and_sensitive_to_order_text_and_label() -> None:
    texts, labels = ["play jazz", "rain in oslo"], ["play_music", "get_weather"]
    digest = fingerprint(texts, labels)
    # Pinned: privaudit.json records it, so it must not change across runs, machines or releases.
    assert digest == "a50424be2651eb48d4c46c846c71e891be973d447cd5e979dd8be7d1fdd0628b"
    assert fingerprint(tuple(texts), tuple(labels)) == digest
    assert fingerprint(texts[::-1], labels[::-1]) != digest  # same examples, other order
    assert fingerprint(texts, labels[::-1]) != digest  # labels swapped
    assert fingerprint(["play jazz!", "rain in oslo"], labels) != digest
    assert fingerprint(texts, ["play_music", 0]) != fingerprint(texts, ["play_music", "0"])  # an id is not a name
    assert fingerprint(["ab", "c"], ["x", "x"]) != fingerprint(["a", "bc"], ["x", "x"])  # no concatenation clash


def test_fingerprint_of_a_file_is_that_of_its_examples(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "d.jsonl", GOOD + '{"text": "rain in oslo", "label": "get_weather"}\n')
    csv = write(tmp_path / "d.csv", "text,label\nplay jazz,play_music\nrain in oslo,get_weather\n")
    a, b = read_dataset(jsonl), read_dataset(csv)
    assert fingerprint(a.texts, a.labels) == fingerprint(b.texts, b.labels)


# --- records in memory (the Python API) -----------------------------------------------------------------------


class FakeFrame:
    """What a pandas DataFrame offers dataset_from_records: ``columns`` and ``to_dict("records")``."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.columns = list(rows[0]) if rows else ["text", "label"]

    def to_dict(self, orient: str) -> list[dict]:
        assert orient == "records"
        return self.rows


def test_records_in_memory_are_read_like_a_file(tmp_path: Path) -> None:
    records = [{"text": "play some jazz", "label": "play_music"}, {"text": "rain in oslo?", "label": np.int64(0)}]
    dataset = dataset_from_records(records, name="<members>")
    assert dataset == TextDataset(path="<members>", texts=("play some jazz", "rain in oslo?"), labels=("play_music", 0))
    assert type(dataset.labels[1]) is int  # numpy's integers become ids, as a file's integers do
    file = write(tmp_path / "d.jsonl", '{"text": "play some jazz", "label": "play_music"}\n')
    assert fingerprint(*_columns(dataset_from_records(records[:1], name="<x>"))) == fingerprint(
        *_columns(read_dataset(file))
    )
    assert read_dataset(dataset) is dataset  # already read: passed through, only counted
    with pytest.raises(PrivauditError, match=r"^<members>: only 2 examples; at least 3 are needed$"):
        read_dataset(dataset, min_examples=3)


def _columns(dataset: TextDataset) -> tuple:
    return dataset.texts, dataset.labels


def test_a_data_frame_is_read_by_its_columns_without_pandas() -> None:
    frame = FakeFrame([{"text": "wake me at 7", "label": "set_alarm", "extra": 1}])
    assert dataset_from_records(frame, name="<data>").texts == ("wake me at 7",)
    with pytest.raises(PrivauditError, match=r"^<data>: the data frame must have the columns 'text' and 'label'$"):
        dataset_from_records(FakeFrame([{"utterance": "hi", "label": "x"}]), name="<data>")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"text": "hi"}], r"^<m>\[0\]: each record needs both 'text' and 'label' fields$"),
        ([{"text": "hi", "label": "a"}, "hi"], r"^<m>\[1\]: each record needs both"),
        ([{"text": " ", "label": "a"}], r"^<m>\[0\]: 'text' must be a non-empty string$"),
        ([{"text": float("nan"), "label": "a"}], r"^<m>\[0\]: 'text' must be a non-empty string$"),
        ([{"text": "hi", "label": True}], r"^<m>\[0\]: 'label' must be a label name or an integer id$"),
        ([], r"^<m>: no examples; at least 1 are needed$"),
        ({"text": ["hi"], "label": ["a"]}, r"^<m>: expected a file path, a list of \{'text', 'label'\} dicts"),
        (42, r"^<m>: expected a file path, .* not int$"),
    ],
)
def test_bad_records_name_their_position(records, message) -> None:
    with pytest.raises(PrivauditError, match=message):
        dataset_from_records(records, name="<m>")

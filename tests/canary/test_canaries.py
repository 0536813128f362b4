"""Canary templates, drawing, planting and the canary file (``privaudit/canary/canaries.py``)."""

from __future__ import annotations

import json
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from privaudit.canary.canaries import (
    Canary,
    draw_audit_canaries,
    draw_canaries,
    fill,
    parse_template,
    planted_examples,
    read_canaries,
    write_canaries,
)
from privaudit.errors import PrivauditError

PIN = "my pin code is {d} {d} {d} {d}"
LABELS = ["get_weather", "play_music", "set_alarm"]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_parse_template_and_fill() -> None:
    alphabets = parse_template("code {d}-{l}{d}")
    assert alphabets == (tuple(string.digits), tuple(string.ascii_lowercase), tuple(string.digits))
    assert fill("code {d}-{l}{d}", ("4", "x", "2")) == "code 4-x2"
    canary = Canary(
        template=PIN, alphabets=parse_template(PIN), secret=("1", "2", "3", "4"), label="x", repeats=1, inserted=True
    )
    assert canary.text == "my pin code is 1 2 3 4"


@pytest.mark.parametrize(
    ("template", "complaint"),
    [("no secret here", "has no slot"), ("my {x} is {d}", r"unknown slot \{x\}")],
)
def test_bad_templates(template: str, complaint: str) -> None:
    with pytest.raises(PrivauditError, match=complaint):
        parse_template(template)


def test_fill_with_too_few_values() -> None:
    with pytest.raises(PrivauditError, match="fewer values than"):
        fill(PIN, ("1", "2"))


def test_draw_canaries_inserted_then_controls() -> None:
    canaries = draw_canaries(template=PIN, label="play_music", count=10, repeats=7, controls=5, rng=rng())
    assert len(canaries) == 15
    assert len({c.secret for c in canaries}) == 15  # distinct secrets
    inserted, controls = canaries[:10], canaries[10:]
    assert all(c.inserted and c.repeats == 7 for c in inserted)
    assert all(not c.inserted and c.repeats == 0 for c in controls)
    assert all(c.label == "play_music" and c.kind == "exposure" and c.template == PIN for c in canaries)
    assert all(len(c.secret) == 4 and all(v in string.digits for v in c.secret) for c in canaries)


def test_draw_canaries_is_seeded() -> None:
    def texts(seed: int) -> list[str]:
        return [
            c.text for c in draw_canaries(template=PIN, label=LABELS, count=5, repeats=1, controls=5, rng=rng(seed))
        ]

    assert texts(0) == texts(0)
    assert texts(0) != texts(1)


def test_random_canary_labels_are_uniform() -> None:
    canaries = draw_canaries(template=PIN, label=LABELS, count=300, repeats=1, controls=0, rng=rng())
    counts = Counter(c.label for c in canaries)
    assert set(counts) == set(LABELS)
    # Binomial(300, 1/3): mean 100, sd 8.2; 60..140 is about 5 sd either side.
    assert all(60 <= n <= 140 for n in counts.values()), counts


def test_draw_canaries_uses_the_whole_space_and_no_more() -> None:
    canaries = draw_canaries(template="{d}", label="x", count=6, repeats=1, controls=4, rng=rng())
    assert sorted(c.text for c in canaries) == list(string.digits)
    with pytest.raises(PrivauditError, match="has only 10 secrets"):
        draw_canaries(template="{d}", label="x", count=6, repeats=1, controls=5, rng=rng())


def test_audit_canaries_are_each_inserted_with_probability_one_half() -> None:
    canaries = draw_audit_canaries(template=PIN, labels=LABELS, count=400, rng=rng(), exclude=set())
    assert len({c.text for c in canaries}) == 400
    assert all(c.kind == "audit" and c.repeats == int(c.inserted) for c in canaries)
    n_inserted = sum(c.inserted for c in canaries)
    # Binomial(400, 1/2): mean 200, sd 10.
    assert 150 <= n_inserted <= 250
    assert set(Counter(c.label for c in canaries)) == set(LABELS)


def test_audit_canaries_avoid_excluded_texts_and_stop_when_the_space_is_spent() -> None:
    exclude = {"3", "7", "not a secret of this template"}
    canaries = draw_audit_canaries(template="{d}", labels=LABELS, count=8, rng=rng(), exclude=exclude)
    assert sorted(c.text for c in canaries) == ["0", "1", "2", "4", "5", "6", "8", "9"]
    # Nine would need a secret that does not exist: an error, not an endless loop.
    with pytest.raises(PrivauditError, match="has only 8 unused secrets"):
        draw_audit_canaries(template="{d}", labels=LABELS, count=9, rng=rng(), exclude=exclude)


def test_planted_examples_repeat_inserted_canaries_only() -> None:
    exposure = draw_canaries(template=PIN, label="set_alarm", count=3, repeats=4, controls=2, rng=rng())
    audit = draw_audit_canaries(template="audit {d}{d}{d}", labels=LABELS, count=20, rng=rng(), exclude=set())
    planted = planted_examples(exposure + audit)
    counts = Counter(text for text, _ in planted)
    for canary in exposure + audit:
        assert counts[canary.text] == (canary.repeats if canary.inserted else 0)
    assert len(planted) == 3 * 4 + sum(c.inserted for c in audit)
    assert all(label == {c.text: c.label for c in exposure + audit}[text] for text, label in planted)


def test_canary_file_round_trip(tmp_path: Path) -> None:
    canaries = draw_canaries(template="pin {d}{l}", label=LABELS, count=3, repeats=2, controls=2, rng=rng())
    canaries += draw_audit_canaries(template="audit {d}{d}", labels=LABELS, count=4, rng=rng(), exclude=set())
    path = tmp_path / "sub" / "dir" / "canaries.jsonl"  # parents are made
    write_canaries(path, canaries)
    assert read_canaries(path) == canaries
    assert [p.name for p in path.parent.iterdir()] == ["canaries.jsonl"]  # no temporary file left


def test_write_canaries_failure_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    canaries = draw_canaries(template=PIN, label="x", count=1, repeats=1, controls=0, rng=rng())
    with pytest.raises(PrivauditError, match="cannot write the canary file") as err:
        write_canaries(tmp_path / "file" / "canaries.jsonl", canaries)
    assert str(tmp_path / "file" / "canaries.jsonl") in str(err.value)


def test_read_minimal_record_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"template": PIN, "secret": ["1", "2", "3", "4"], "label": 3}) + "\n", encoding="utf-8")
    (canary,) = read_canaries(path)
    assert canary.alphabets == parse_template(PIN)
    assert (canary.label, canary.inserted, canary.repeats, canary.kind) == ("3", True, 1, "exposure")


GOOD = json.dumps({"template": PIN, "secret": ["1", "2", "3", "4"], "label": "x"})


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("{oops", "needs 'template', 'secret' and 'label'"),
        (json.dumps({"template": PIN, "label": "x"}), "needs 'template', 'secret' and 'label'"),
        (json.dumps({"template": PIN, "secret": ["1", "2"], "label": "x"}), "does not fit the 4 slots"),
        (
            json.dumps({"template": PIN, "secret": ["1", "2", "3", "a"], "label": "x"}),
            "'a' is not in its slot's alphabet",
        ),
        (json.dumps({"template": "no slot", "secret": [], "label": "x", "alphabets": [["0"]]}), "has no slot"),
    ],
)
def test_read_canaries_errors_name_file_and_line(tmp_path: Path, line: str, complaint: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(GOOD + "\n\n" + line + "\n", encoding="utf-8")  # the bad record is on line 3
    with pytest.raises(PrivauditError, match=complaint) as err:
        read_canaries(path)
    assert str(err.value).startswith(f"{path}:3: ")


def test_read_canaries_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(PrivauditError, match="no such canary file"):
        read_canaries(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(PrivauditError, match="the canary file is empty"):
        read_canaries(tmp_path / "empty.jsonl")

"""Tests for fixtures/generate_data.py, the synthetic intent-classification fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "fixtures" / "generate_data.py"
COMMITTED = ROOT / "fixtures" / "data"
SPLITS = {"members": 1000, "non_members": 1000, "population": 2000}
FILES = [f"{name}.jsonl" for name in SPLITS] + ["labels.json"]


def _generate(out_dir: Path, seed: int) -> str:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out_dir), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _read(out_dir: Path) -> dict[str, list[dict[str, str]]]:
    return {name: [json.loads(line) for line in (out_dir / f"{name}.jsonl").open()] for name in SPLITS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fixture_data")
    dirs = {"first": base / "seed0_a", "second": base / "seed0_b", "other": base / "seed1"}
    for key, seed in (("first", 0), ("second", 0), ("other", 1)):
        _generate(dirs[key], seed)
    return dirs


def test_same_seed_gives_byte_identical_files(runs: dict[str, Path]) -> None:
    for name in FILES:
        assert (runs["first"] / name).read_bytes() == (runs["second"] / name).read_bytes(), name


def test_other_seed_gives_different_data(runs: dict[str, Path]) -> None:
    assert (runs["first"] / "members.jsonl").read_bytes() != (runs["other"] / "members.jsonl").read_bytes()


def test_committed_copy_is_seed_0_output(runs: dict[str, Path]) -> None:
    for name in FILES:
        assert (COMMITTED / name).read_bytes() == (runs["first"] / name).read_bytes(), (
            f"fixtures/data/{name} is stale: run python fixtures/generate_data.py --out fixtures/data --seed 0"
        )


def test_split_sizes(runs: dict[str, Path]) -> None:
    data = _read(runs["first"])
    assert {name: len(records) for name, records in data.items()} == SPLITS


def test_labels_cover_at_least_18_intents(runs: dict[str, Path]) -> None:
    labels = json.loads((runs["first"] / "labels.json").read_text())
    assert len(labels) >= 18
    assert len(set(labels)) == len(labels)
    for name, records in _read(runs["first"]).items():
        used = {r["label"] for r in records}
        assert used <= set(labels), name
        assert len(used) == len(labels), f"{name} misses an intent"


def test_no_text_is_shared_between_files(runs: dict[str, Path]) -> None:
    texts = [r["text"] for records in _read(runs["first"]).values() for r in records]
    assert len(set(texts)) == len(texts) == sum(SPLITS.values())


def test_text_is_lower_case_with_single_spaces(runs: dict[str, Path]) -> None:
    for records in _read(runs["first"]).values():
        for r in records:
            assert set(r) == {"text", "label"}
            assert r["text"] == r["text"].lower() == " ".join(r["text"].split()), r["text"]


def test_no_text_starts_with_the_canary_prefix(runs: dict[str, Path]) -> None:
    for records in _read(runs["first"]).values():
        assert not any(r["text"].startswith("my pin code is") for r in records)


def test_all_ten_digits_are_tokens(runs: dict[str, Path]) -> None:
    data = _read(runs["first"])
    for name, records in data.items():
        tokens = {token for r in records for token in r["text"].split()}
        assert {str(d) for d in range(10)} <= tokens, name


def test_summary_counts_per_intent(tmp_path: Path) -> None:
    stdout = _generate(tmp_path, 0)
    labels = json.loads((tmp_path / "labels.json").read_text())
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[1:]}
    assert rows["total"] == ["1000", "1000", "2000"]
    assert all(label in rows for label in labels)

"""Issue 21: nothing lost, caches that heal. ``train --overwrite`` keeps the old model until the new one is complete;
a damaged reference model or sweep point is moved aside with one warning and rebuilt, with the first run's numbers; a
damaged gradient canary record is one clear line.

Each cache kind is damaged three ways (truncated, zeroed, a flipped byte), on a tiny recipe (the conftest's tiny BERT,
one or two epochs on a few dozen examples) so that a retrain takes a second or two.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import CANARY_TEMPLATE, TINY_ARCH, make_records, write_jsonl

from privaudit.errors import PrivauditError
from privaudit.integrity import ENTRY_RECORD
from privaudit.sweep import run as sweep_run
from privaudit.target import Target
from privaudit.training import job as trainjob
from privaudit.training.executor import JobData, ReferenceJob, run_job
from privaudit.training.gradient_canaries import read_gradient_canaries
from privaudit.training.train import TrainConfig


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _zero(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(bytes(len(raw)))  # every byte zero, the length kept: what a lost page cache leaves


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0x10  # inside the last tensor's data: the header still parses, only the content hash can tell
    path.write_bytes(bytes(raw))


DAMAGE = {"truncated": _truncate, "zeroed": _zero, "flipped": _flip}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warning_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


# --- train --overwrite ---------------------------------------------------------------------------------------------------


def _train(run_cli, data: Path, out: Path, *extra: object):
    return run_cli("train", data, "--out", out, "--epochs", 1, "--max-length", 16, "--device", "cpu", *extra)


def test_a_failing_overwrite_leaves_the_old_model_intact(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "model"
    assert _train(run_cli, tiny_data, out).exit_code == 0
    before = {p.name: sha(p) for p in out.iterdir()}
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the canary file's folder should be", encoding="utf-8")
    result = _train(
        run_cli, tiny_data, out, "--overwrite", "--seed", 1, "--canary", CANARY_TEMPLATE, "--canary-label", "random",
        "--canaries-out", blocker / "canaries.jsonl",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "cannot write the canary file" in result.stderr and "internal error" not in result.stderr
    assert {p.name: sha(p) for p in out.iterdir()} == before  # the old model, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "not-a-dir", "train.jsonl"]  # no temporary left


def test_a_successful_overwrite_swaps_in_the_new_model(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "model"
    assert _train(run_cli, tiny_data, out).exit_code == 0
    old = sha(out / "model.safetensors")
    canaries = tmp_path / "c.jsonl"
    result = _train(
        run_cli, tiny_data, out, "--overwrite", "--seed", 1, "--canary", CANARY_TEMPLATE, "--canary-label", "random",
        "--canary-count", 2, "--canaries-out", canaries,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sha(out / "model.safetensors") != old and canaries.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "model", "train.jsonl"]


def test_a_swap_that_fails_puts_the_old_canary_file_back(run_cli, tmp_path: Path, tiny_data: Path, monkeypatch):
    out, canaries = tmp_path / "model", tmp_path / "c.jsonl"
    flags = ("--canary", CANARY_TEMPLATE, "--canary-label", "random", "--canaries-out", canaries)
    assert _train(run_cli, tiny_data, out, *flags).exit_code == 0
    before = {p.name: sha(p) for p in [*out.iterdir(), canaries]}

    def refuse(staged: Path, out_dir: Path) -> None:
        raise PrivauditError(f"{out_dir}: cannot put the new model in place (simulated)")

    monkeypatch.setattr(trainjob, "publish_model", refuse)
    result = _train(run_cli, tiny_data, out, "--overwrite", "--seed", 1, *flags)
    assert result.exit_code == 2 and "simulated" in result.stderr, result.output
    assert {p.name: sha(p) for p in [*out.iterdir(), canaries]} == before  # model and its ground truth, as they were
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "model", "train.jsonl"]


# --- reference models -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_data(tiny_model) -> JobData:
    records = list({r["text"]: r for r in make_records(60, seed=7)}.values())
    target = Target.load(tiny_model.path)
    names = tuple(sorted({r["label"] for r in records}))
    return JobData(
        pool_texts=tuple(r["text"] for r in records),
        pool_labels=np.array([names.index(r["label"]) for r in records]),
        label_names=names,
        tokenizer=target.tokenizer,
        scored_texts=tuple(r["text"] for r in records[:20]),
    )


def _reference_job(model_dir: Path) -> ReferenceJob:
    config = TrainConfig(epochs=2, batch_size=16, max_length=16, seed=0, architecture=TINY_ARCH)
    return ReferenceJob(index=0, seed=3, size=30, config=config, dp=None, model_dir=model_dir)


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_reference_model_is_moved_aside_and_retrained(reference_data, tmp_path: Path, capsys, how) -> None:
    job = _reference_job(tmp_path / "cache" / "model-0")
    first = run_job(job, reference_data)
    assert first.status == "trained" and (job.model_dir / ENTRY_RECORD).is_file()
    assert run_job(job, reference_data).status == "cached"
    weights = job.model_dir / "model.safetensors"
    trained_bytes = weights.read_bytes()
    capsys.readouterr()
    DAMAGE[how](weights)
    again = run_job(job, reference_data)
    assert again.status == "trained"
    np.testing.assert_array_equal(again.logits, first.logits)  # the first run's numbers
    assert weights.read_bytes() == trained_bytes
    (line,) = warning_lines(capsys)
    assert str(job.model_dir) in line and "damaged cached reference model" in line and "model.safetensors" in line
    assert len(list(job.model_dir.parent.glob("model-0.damaged-*"))) == 1


def test_a_legacy_entry_without_a_record_is_still_checked_by_its_header(reference_data, tmp_path, capsys) -> None:
    job = _reference_job(tmp_path / "cache" / "model-0")
    first = run_job(job, reference_data)
    (job.model_dir / ENTRY_RECORD).unlink()  # as an older privaudit wrote it
    assert run_job(job, reference_data).status == "cached"
    _truncate(job.model_dir / "model.safetensors")
    capsys.readouterr()
    again = run_job(job, reference_data)  # once "internal error: SafetensorError: ... incomplete metadata"
    assert again.status == "trained"
    np.testing.assert_array_equal(again.logits, first.logits)
    (line,) = warning_lines(capsys)
    assert "not a safetensors file" in line


# --- sweep points --------------------------------------------------------------------------------------------------------


@pytest.fixture
def point(tmp_path: Path, monkeypatch) -> trainjob.TrainJob:
    monkeypatch.setattr(trainjob, "TrainConfig", partial(TrainConfig, architecture=TINY_ARCH))
    data = write_jsonl(tmp_path / "d.jsonl", make_records(40, seed=1))
    return trainjob.TrainJob(
        data=data, out=tmp_path / "points" / "eps-inf", epochs=1, batch_size=16, max_length=16, overwrite=True,
        canary=CANARY_TEMPLATE, canary_label="random", canary_count=2, canary_repeats=2,
        canaries_out=tmp_path / "points" / "eps-inf.canaries.jsonl",
    )  # fmt: skip


@pytest.mark.parametrize("how", [*DAMAGE, "canary file"])
def test_a_damaged_sweep_point_is_moved_aside_and_retrained(point, capsys, how) -> None:
    assert sweep_run.run_points([point]) == ["trained"]
    weights = point.out / "model.safetensors"
    first = {"weights": sha(weights), "canaries": sha(point.canaries_out)}
    assert sweep_run.run_points([point]) == ["cached"]
    capsys.readouterr()
    if how == "canary file":
        _flip(point.canaries_out)
    else:
        DAMAGE[how](weights)
    assert sweep_run.run_points([point]) == ["trained"]
    assert {"weights": sha(weights), "canaries": sha(point.canaries_out)} == first  # the first run's point
    (line,) = warning_lines(capsys)
    assert str(point.out) in line and "damaged sweep point" in line
    assert len(list(point.out.parent.glob("eps-inf.damaged-*"))) == 1
    assert sweep_run.run_points([point]) == ["cached"]


# --- the gradient canary record ------------------------------------------------------------------------------------------


def _gradient_record(tmp_path: Path) -> Path:
    canaries = tmp_path / "m.canaries.jsonl"
    record = tmp_path / "m.canaries.gradient.npz"
    rng = np.random.default_rng(0)
    np.savez(
        record, observations=rng.normal(size=(50, 4)), noise_multiplier=np.float64(1.0),
        sample_rate=np.float64(0.1), max_grad_norm=np.float64(1.0),
    )  # fmt: skip
    lines = [{"kind": "gradient", "index": i, "inserted": i % 2 == 0, "record": record.name} for i in range(4)]
    canaries.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return canaries


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_gradient_record_is_one_line_naming_it(tmp_path: Path, run_cli, how) -> None:
    canaries = _gradient_record(tmp_path)
    assert read_gradient_canaries(canaries).observations.shape == (50, 4)
    record = tmp_path / "m.canaries.gradient.npz"
    DAMAGE[how](record)
    with pytest.raises(PrivauditError, match="gradient canary record is damaged or truncated") as err:
        read_gradient_canaries(canaries)
    assert str(err.value).startswith(str(record))

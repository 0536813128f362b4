"""Issue 21: hostile model directories and values that cannot be right exit 2 with one line naming the culprit.

Each case is one the adversarial run found ending in "internal error", in a gate that can never fail or always fails,
or in a bound check reported "passed" against a NaN claim. Every one must now exit 2, print one ``error:`` line that
names the file, flag or field, and write nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from pathlib import Path

import pytest
from conftest import CANARY_TEMPLATE, FIXTURE_DATA, FIXTURE_MODEL, write_jsonl

from privaudit.endpoint.formats import parse_response
from privaudit.errors import PrivauditError
from privaudit.gate.gate import parse_threshold
from privaudit.gate.measurements import mia_metrics
from privaudit.ranges import check_epsilon, check_limit, check_measured
from privaudit.target import Target, check_model_dir

MEMBERS = FIXTURE_DATA / "members.jsonl"
NON_MEMBERS = FIXTURE_DATA / "non_members.jsonl"


def fails_with_one_line(result, *needles: str) -> str:
    """Exit 2, one ``error:`` line on stderr holding every needle, no "internal error", no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ") and "internal error" not in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture
def model(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(FIXTURE_MODEL, out)
    return out


def mia(run_cli, model_dir: Path, *extra: object):
    return run_cli("mia", model_dir, "--members", MEMBERS, "--non-members", NON_MEMBERS, *extra)


# --- hostile or broken model directories ------------------------------------------------------------------------------


def _edit_json(path: Path, edit) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document)
    path.write_text(json.dumps(document), encoding="utf-8")


def _not_safetensors(model: Path) -> None:
    (model / "model.safetensors").write_text("this is not a safetensors file at all", encoding="utf-8")


def _huge_header(model: Path) -> None:
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}" * 100)


def _truncated(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _symlink_out(model: Path) -> None:
    (model / "model.safetensors").unlink()
    os.symlink("/etc/passwd", model / "model.safetensors")


def _fewer_labels(model: Path) -> None:
    def drop(config: dict) -> None:
        config["id2label"] = {k: v for k, v in config["id2label"].items() if k != "19"}
        config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}

    _edit_json(model / "config.json", drop)


def _no_id2label(model: Path) -> None:
    _edit_json(model / "config.json", lambda c: [c.pop("id2label"), c.pop("label2id", None)])


def _max_length_words(model: Path) -> None:
    _edit_json(model / "privaudit.json", lambda r: r.update(max_length="sixty-four"))


def _max_length_past_positions(model: Path) -> None:
    _edit_json(model / "privaudit.json", lambda r: r.update(max_length=164))


MODEL_CASES = {
    "not safetensors": (_not_safetensors, ["model.safetensors", "not a safetensors file"]),
    "huge header": (_huge_header, ["model.safetensors", "over the 100,000,000 limit"]),
    "truncated": (_truncated, ["model.safetensors", "truncated"]),
    "symlink to a system file": (_symlink_out, ["model.safetensors", "symbolic link out of the model directory"]),
    "fewer labels than the head": (_fewer_labels, ["config.json", "19 labels", "20 outputs"]),
    "no id2label": (_no_id2label, ["config.json", "no id2label"]),
    "max_length in words": (_max_length_words, ["privaudit.json", "max_length is 'sixty-four'"]),
    "max_length past the positions": (_max_length_past_positions, ["privaudit.json", "max_length 164", "32 position"]),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_a_hostile_model_directory_is_one_line_naming_the_file(run_cli, model: Path, tmp_path: Path, case) -> None:
    spoil, needles = MODEL_CASES[case]
    spoil(model)
    report = tmp_path / "report.json"
    line = fails_with_one_line(mia(run_cli, model, "--json-out", report), *needles)
    assert str(model) in line
    assert not report.exists()
    with pytest.raises(PrivauditError):  # the library refuses it before torch reads anything
        check_model_dir(model)


def test_a_symlink_inside_the_directory_is_fine(model: Path) -> None:
    (model / "model.safetensors").rename(model / "weights.bin")
    os.symlink("weights.bin", model / "model.safetensors")
    assert Target.load(model).n_labels == 20


# --- thresholds, claims and baselines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--fail-above", "auc=2"], ["--fail-above", "'auc'", "limit 2", "never fail"]),
        (["--fail-above", "tpr@1%fpr=-0.5"], ["--fail-above", "tpr@1%fpr", "always fail"]),
        (["--fail-above", "auc=0.3"], ["--fail-above", "[0.5, 1]", "worse than guessing"]),
        (["--fail-above", "advantage=nan"], ["--fail-above", "'advantage'", "NaN"]),
        (["--epsilon", "nan"], ["--epsilon", "NaN"]),
        (["--epsilon", "-1"], ["--epsilon", ">= 0 and finite"]),
        (["--epsilon", "inf"], ["--epsilon", ">= 0 and finite"]),
    ],
)
def test_mia_refuses_values_that_cannot_be_right(run_cli, flags, needles, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    fails_with_one_line(mia(run_cli, FIXTURE_MODEL, *flags, "--json-out", report), *needles)
    assert not report.exists()


def test_a_config_file_threshold_is_checked_like_the_flag(run_cli, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.privaudit.mia.fail_above]\nauc = 2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    fails_with_one_line(mia(run_cli, FIXTURE_MODEL), "pyproject.toml", "fail_above", "'auc'", "never fail")


def test_a_nan_baseline_is_refused_naming_the_file_and_field(run_cli, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    measurements = [{"subject": "loss", "metric": "auc", "value": math.nan, "low": None, "high": None}]
    baseline.write_text(json.dumps({"schema": "privaudit.baseline/1", "measurements": measurements}))
    assert "NaN" in baseline.read_text()  # Python's json writes NaN, and reads it back as a float
    line = fails_with_one_line(
        mia(run_cli, FIXTURE_MODEL, "--baseline", baseline, "--max-increase", "auc=0.02"),
        str(baseline),
        "measurement 0",
        "'value'",
        "NaN",
    )
    assert "loss auc" in line


def _dp_scores(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "scores.jsonl", [{"score": i / 10, "inserted": i % 2} for i in range(40)])


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_dp_audit_refuses_an_epsilon_that_is_not_a_claim(run_cli, tmp_path: Path, value: str) -> None:
    result = run_cli("dp-audit", "--scores", _dp_scores(tmp_path), "--epsilon", value)
    fails_with_one_line(result, "--epsilon")


def test_dp_audit_with_a_real_claim_still_runs(run_cli, tmp_path: Path) -> None:
    result = run_cli("dp-audit", "--scores", _dp_scores(tmp_path), "--epsilon", "8", "--format", "json")
    assert result.exit_code == 0, result.output


def test_the_ranges_are_the_documented_ones() -> None:
    assert check_limit("fail_above", "auc", 0.5, where="x") == 0.5
    assert check_limit("fail_above", "auc", 1, where="x") == 1.0
    assert check_limit("fail_above", "tpr@1%fpr", 0, where="x") == 0.0
    assert check_limit("fail_above", "epsilon_lb", 50, where="x") == 50.0
    assert check_limit("max_increase", "auc", 0.02, where="x") == 0.02
    assert check_measured("auc", 0.3, where="x") == 0.3  # a measured AUC may be below 0.5; a limit may not
    assert check_epsilon(0.0) == 0.0 and check_epsilon(None) is None
    for kind, metric, value in [
        ("fail_above", "auc", 1.01),
        ("fail_above", "advantage", -0.01),
        ("fail_above", "epsilon_lb", -1),
        ("fail_above", "exposure", math.inf),
        ("max_increase", "tpr@1%fpr", 1.5),
        ("max_increase", "epsilon_lb", -0.1),
    ]:
        with pytest.raises(PrivauditError, match="^x: "):
            check_limit(kind, metric, value, where="x")
    with pytest.raises(PrivauditError, match="NaN"):
        parse_threshold("auc=nan", metrics=mia_metrics(), source="--fail-above")
    with pytest.raises(PrivauditError):
        check_measured("tpr@1%fpr", 1.2, where="x")


# --- train --canary-count 0 ---------------------------------------------------------------------------------------------


def test_train_canary_count_0_exits_2_before_training(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    result = run_cli(
        "train", tiny_data, "--out", tmp_path / "m", "--canary", CANARY_TEMPLATE, "--canary-label", "random",
        "--canary-count", 0, "--canaries-out", tmp_path / "c.jsonl",
    )  # fmt: skip
    fails_with_one_line(result, "--canary-count 0", "at least 1")
    assert not (tmp_path / "m").exists() and not (tmp_path / "c.jsonl").exists()


# --- canary and scores files, field by field ------------------------------------------------------------------------------


def _canary_file(tmp_path: Path, **changes: object) -> Path:
    lines = (FIXTURE_MODEL.parent / "intent-tiny.canaries.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[1])
    record.update(changes)
    lines[1] = json.dumps(record)
    path = tmp_path / "canaries.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"repeats": "ten"}, ["field 'repeats'", "a whole number", '"ten"']),
        ({"inserted": "yes"}, ["field 'inserted'", "true/false"]),
        ({"secret": "1234"}, ["field 'secret'", "a list"]),
        ({"label": None}, ["field 'label'"]),
        ({"repeats": -3}, ["field 'repeats'", "0 or more"]),
    ],
)
def test_a_malformed_canary_field_names_the_line_and_field(run_cli, tmp_path: Path, changes, needles) -> None:
    path = _canary_file(tmp_path, **changes)
    fails_with_one_line(run_cli("canary", FIXTURE_MODEL, "-c", path, "--attack", "none"), f"{path}:2:", *needles)


def test_a_canary_file_that_is_not_utf8_names_the_byte_offset(run_cli, tmp_path: Path) -> None:
    path = _canary_file(tmp_path)
    raw = path.read_bytes()
    offset = raw.index(b"\n") + 5  # inside line 2
    path.write_bytes(raw[:offset] + b"\xff" + raw[offset + 1 :])
    fails_with_one_line(run_cli("canary", FIXTURE_MODEL, "-c", path), str(path), f"offset {offset}", "line 2", "UTF-8")


def _mia_scores(tmp_path: Path, bad: dict | None = None) -> Path:
    records = [{"member": i % 2, "logits": [0.1 * i, -0.1 * i], "label": i % 2} for i in range(30)]
    if bad is not None:
        records[4].update(bad)
    return write_jsonl(tmp_path / "scores.jsonl", records)


@pytest.mark.parametrize(
    ("bad", "needles"),
    [
        ({"label": "ten"}, [":5:", "'label'", "class id"]),
        ({"logits": [0.1, "x"]}, [":5:", "'logits' item 1", "finite number"]),
        ({"logits": "not json"}, [":5:", "'logits'", "JSON list"]),
        ({"member": "maybe"}, [":5:", "'member'"]),
    ],
)
def test_a_malformed_scores_field_names_the_line_and_field(run_cli, tmp_path: Path, bad, needles) -> None:
    path = _mia_scores(tmp_path, bad)
    fails_with_one_line(run_cli("mia", "--scores", path), str(path), *needles)


def test_a_scores_file_that_is_not_utf8_names_the_byte_offset(run_cli, tmp_path: Path) -> None:
    path = _mia_scores(tmp_path)
    path.write_bytes(path.read_bytes() + b'{"member": 1, "note": "caf\xe9"}\n')
    offset = path.read_bytes().index(b"\xe9")
    fails_with_one_line(run_cli("mia", "--scores", path), str(path), f"offset {offset}", "line 31", "UTF-8")
    dp = tmp_path / "dp.jsonl"
    dp.write_bytes(b'{"score": 1.0, "inserted": 1}\n\x80\n')
    fails_with_one_line(run_cli("dp-audit", "--scores", dp), str(dp), "offset 30", "line 2", "UTF-8")


# --- an endpoint's probabilities -----------------------------------------------------------------------------------------


def test_probabilities_that_do_not_sum_to_1_are_refused() -> None:
    v2 = {
        "outputs": [{"shape": [1, 3], "datatype": "FP64", "data": [1.0, 1.0, 1.0], "parameters": {"labels": "a,b,c"}}]
    }
    with pytest.raises(PrivauditError, match=r"sum to 3, not 1 \(within 0.001\)"):
        parse_response("v2", json.dumps(v2).encode(), n=1, label_names=None)
    v2["outputs"][0]["data"] = [0.5, 0.3, 0.1]
    with pytest.raises(PrivauditError, match="sum to 0.9, not 1"):
        parse_response("v2", json.dumps(v2).encode(), n=1, label_names=None)
    v2["outputs"][0]["data"] = [0.5, 0.3, 0.2004]  # within 1e-3: float noise of a server's softmax
    assert parse_response("v2", json.dumps(v2).encode(), n=1, label_names=None)[0].label == "a"
    hf = [[{"label": "a", "score": 0.9}, {"label": "b", "score": 0.9}]]
    with pytest.raises(PrivauditError, match="sum to 1.8"):
        parse_response("hf", json.dumps(hf).encode(), n=1, label_names=None)
    top1 = [[{"label": "a", "score": 0.6}]]  # fewer classes than the model has: top-k, which may sum below 1
    assert parse_response("hf", json.dumps(top1).encode(), n=1, label_names=None)[0].scores == {"a": 0.6}


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--target-epsilon", "nan"], ["--target-epsilon", "NaN"]),
        (["--target-epsilon", "inf"], ["--target-epsilon", ">= 0 and finite"]),
        (["--noise-multiplier", "1", "--delta", "nan"], ["--delta nan", "0 < delta < 1/N"]),
    ],
)
def test_train_refuses_a_dp_value_that_cannot_be_right(run_cli, tmp_path: Path, tiny_data: Path, flags, needles):
    result = run_cli("train", tiny_data, "--out", tmp_path / "m", "--epochs", 1, "--dp", *flags)
    fails_with_one_line(result, *needles)
    assert not (tmp_path / "m").exists()


def test_jsonl_readers_keep_a_record_whose_string_holds_a_line_separator(tmp_path):
    # U+2028 and U+0085 are line breaks to str.splitlines but legal raw inside a JSON string (ensure_ascii=False
    # writes them so): every JSONL reader must keep such a record whole.
    import json as _json

    from privaudit.canary.dpaudit import canary_file_kinds, read_scores_file

    scores = tmp_path / "scores.jsonl"
    lines = [{"score": 1.0, "inserted": 1, "note": "a\u2028b"}, {"score": 0.0, "inserted": 0, "note": "c\u0085d"}]
    scores.write_text("".join(_json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    values, inserted = read_scores_file(scores)
    assert values.tolist() == [1.0, 0.0] and inserted.tolist() == [True, False]
    canaries = tmp_path / "canaries.jsonl"
    canaries.write_text(_json.dumps({"kind": "data", "text": "x\u2028y"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert canary_file_kinds(canaries) == {"data"}

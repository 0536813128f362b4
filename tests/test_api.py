"""The Python front door (``privaudit/api/``): the commands' code, called with keywords, returning data, printing nothing.

Each function is checked against its command: the same numbers (``--format json`` text, byte for byte), the same
error messages, and data in memory read as the same file would be.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import typer
from conftest import FIXTURE_DATA, FIXTURE_MODEL, TINY_ARCH, make_records, write_jsonl

import privaudit
from privaudit.api.inputs import attack_option_specs, attack_spec
from privaudit.api.results import CanaryAudit, MembershipAudit
from privaudit.canary.run import CanaryResult
from privaudit.mia.run import MiaResult

MEMBERS = FIXTURE_DATA / "members.jsonl"
NON_MEMBERS = FIXTURE_DATA / "non_members.jsonl"


def first(path: Path, n: int) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()][:n]


def error_line(result) -> str:
    """The message the command line printed after ``error:``."""
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    return line.removeprefix("error: ")


def without_timings(document: object) -> object:
    """The document without its wall-clock ``seconds`` (ModIvA records how long each extraction took)."""
    if isinstance(document, dict):
        return {k: without_timings(v) for k, v in document.items() if k != "seconds"}
    if isinstance(document, list):
        return [without_timings(v) for v in document]
    return document


# --- the package -------------------------------------------------------------------------------------------------


def test_import_privaudit_does_not_import_torch() -> None:
    code = (
        "import privaudit, sys; assert 'torch' not in sys.modules, 'torch'; "
        "assert not any(m.startswith('privaudit.api') for m in sys.modules), 'privaudit.api'; "
        "privaudit.audit_membership; assert 'torch' not in sys.modules, 'torch on first use'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_front_door_is_four_functions_and_the_error() -> None:
    assert {"train", "epsilon", "audit_membership", "audit_canaries", "PrivauditError"} <= set(privaudit.__all__)
    assert {"train", "epsilon", "audit_membership", "audit_canaries"} <= set(dir(privaudit))
    assert privaudit.PrivauditError is __import__("privaudit.errors").errors.PrivauditError
    with pytest.raises(AttributeError, match="no attribute 'audit'"):
        privaudit.audit  # noqa: B018


@pytest.mark.parametrize("name", ["train", "epsilon", "audit_membership", "audit_canaries"])
def test_every_argument_but_the_first_is_keyword_only(name: str) -> None:
    parameters = list(inspect.signature(getattr(privaudit, name)).parameters.values())
    positional = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == ({"train": ["data"], "epsilon": []}.get(name, ["model_dir"]))
    doc = getattr(privaudit, name).__doc__
    assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc and "Example:" in doc


# The flags that only format, route or gate the output: the front door returns the result instead.
OUTPUT_FLAGS = {
    "output_format", "output", "report", "fail_above", "fail_if_bound_exceeds_epsilon",
    "no_fail_if_bound_exceeds_epsilon", "baseline", "max_increase",
    "save_baseline", "exit_zero", "json_out", "junit_out", "sarif_out", "markdown_out", "config", "per_example",
}  # fmt: skip
# Repeatable flags, named in the plural as their request fields are.
PLURALS = {
    "attack": "attacks",
    "attack_option": "attack_options",
    "reference_dir": "reference_dirs",
    "slice_kind": "slices",
}


@pytest.mark.parametrize(
    ("command", "name"),
    [("train", "train"), ("epsilon", "epsilon"), ("mia", "audit_membership"), ("canary", "audit_canaries")],
)
def test_every_flag_that_changes_the_numbers_is_a_keyword_with_its_default(command: str, name: str) -> None:
    from privaudit.cli import app

    flags = {
        PLURALS.get(p.name, p.name): p.default
        for p in typer.main.get_command(app).commands[command].params
        if p.name not in OUTPUT_FLAGS
    }
    keywords = inspect.signature(getattr(privaudit, name)).parameters
    assert set(flags) <= set(keywords)
    assert set(keywords) - set(flags) <= {"progress", "architecture"}
    for flag, default in flags.items():
        api_default = keywords[flag].default
        if api_default is inspect.Parameter.empty:  # required on both sides
            assert default is None, flag
        else:
            assert api_default == default, flag


# --- epsilon -----------------------------------------------------------------------------------------------------


def test_epsilon_is_opacus_known_answer() -> None:
    eps = privaudit.epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5)
    assert isinstance(eps, float) and eps == pytest.approx(7.32911117143, abs=1e-6)  # tests/stats/test_accounting.py
    assert round(eps, 3) == 7.329


def test_epsilon_of_a_model_is_that_of_the_command(run_cli) -> None:
    model = FIXTURE_MODEL.with_name("intent-tiny-dp")
    eps = privaudit.epsilon(model_dir=str(model))
    assert f"epsilon = {eps:.3f} " in run_cli("epsilon", model).stdout


def test_epsilon_errors_are_the_commands(run_cli) -> None:
    with pytest.raises(privaudit.PrivauditError) as err:
        privaudit.epsilon(noise_multiplier=1.5, sample_rate=0.04)
    assert str(err.value) == error_line(run_cli("epsilon", "--noise-multiplier", 1.5, "--sample-rate", 0.04))
    with pytest.raises(privaudit.PrivauditError) as err:
        privaudit.epsilon(model_dir=FIXTURE_MODEL)
    assert str(err.value) == error_line(run_cli("epsilon", FIXTURE_MODEL))


# --- train -------------------------------------------------------------------------------------------------------


def test_train_from_records_is_training_from_their_file(tmp_path: Path, capfd) -> None:
    records = make_records(60)
    calls: list[tuple] = []
    summary = privaudit.train(
        records,
        out=str(tmp_path / "memory"),
        epochs=2,
        batch_size=16,
        max_length=16,
        architecture=asdict(TINY_ARCH),
        progress=lambda *call: calls.append(call),
    )
    assert capfd.readouterr() == ("", "")  # no progress bar, no table
    assert summary["examples"] == 60 and summary["labels"] == 3 and set(summary) >= {"train accuracy", "seconds"}
    assert calls and {c[0] for c in calls} == {"training"} and calls[-1][1] == calls[-1][2] == 8  # 2 epochs x 4
    privaudit.train(
        write_jsonl(tmp_path / "train.jsonl", records),
        out=tmp_path / "file",
        epochs=2,
        batch_size=16,
        max_length=16,
        architecture=TINY_ARCH,
    )
    in_memory, from_file = (json.loads((tmp_path / d / "privaudit.json").read_text()) for d in ("memory", "file"))
    assert in_memory["data"]["path"] == "<data>" and from_file["data"]["path"] == str(tmp_path / "train.jsonl")
    assert in_memory["data"]["fingerprint"] == from_file["data"]["fingerprint"]
    weights = [(tmp_path / d / "model.safetensors").read_bytes() for d in ("memory", "file")]
    assert weights[0] == weights[1]


def test_train_errors_are_the_commands(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(privaudit.PrivauditError) as err:
        privaudit.train(tiny_data, out=tmp_path / "taken")
    assert str(err.value) == error_line(run_cli("train", tiny_data, "--out", tmp_path / "taken"))
    with pytest.raises(privaudit.PrivauditError, match=r"^epochs=0 is not in the range epochs >= 1$"):
        privaudit.train(tiny_data, out=tmp_path / "m", epochs=0)
    with pytest.raises(privaudit.PrivauditError, match=r"^<data>\[1\]: 'text' must be a non-empty string$"):
        privaudit.train([{"text": "a", "label": "x"}, {"text": "", "label": "x"}], out=tmp_path / "m")
    with pytest.raises(privaudit.PrivauditError, match="^architecture: .*unexpected keyword argument 'width'"):
        privaudit.train(tiny_data, out=tmp_path / "m", architecture={"width": 3})
    assert not (tmp_path / "m").exists()


# --- audit_membership --------------------------------------------------------------------------------------------


def test_audit_membership_is_the_mia_command(run_cli, tmp_path: Path, capfd) -> None:
    members, non_members = first(MEMBERS, 100), first(NON_MEMBERS, 100)
    calls: list[tuple] = []
    result = privaudit.audit_membership(
        FIXTURE_MODEL,
        members=members,
        non_members=non_members,
        attacks=("loss", "entropy"),
        seed=3,
        progress=lambda *call: calls.append(call),
    )
    assert capfd.readouterr() == ("", "")
    assert isinstance(result, MiaResult) and isinstance(result, MembershipAudit)
    assert [a.name for a in result.attacks] == ["loss", "entropy"]
    assert calls[0][0] == "scoring" and calls[-1] == ("attacks", 2, 2)
    cli = run_cli(
        "mia",
        FIXTURE_MODEL,
        "--members",
        write_jsonl(tmp_path / "members.jsonl", members),
        "--non-members",
        write_jsonl(tmp_path / "non_members.jsonl", non_members),
        "--attack",
        "loss,entropy",
        "--seed",
        3,
        "--format",
        "json",
    )
    assert cli.exit_code == 0, cli.output
    assert cli.stdout == result.to_json()  # byte for byte
    document = json.loads(cli.stdout)
    assert document["attacks"][0]["auc"] == result.to_dict()["attacks"][0]["auc"]
    assert {k: v for k, v in document.items() if k != "gate"} == json.loads(json.dumps(result.to_dict()))
    text = result.summary()
    assert "membership inference" in text and "loss" in text and "\x1b[" not in text
    result.write_html(str(tmp_path / "mia.html"))
    assert (tmp_path / "mia.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def disjoint_records(*sizes: int) -> list[list[dict]]:
    """Lists of records of the three intents with no text in two of them, of the given sizes."""
    unique = list({r["text"]: r for r in make_records(2000, seed=5)}.values())
    assert len(unique) >= sum(sizes)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [unique[start : start + size] for start, size in zip(starts, sizes)]


def test_reference_models_train_quietly_and_report_progress(tmp_path: Path, capfd) -> None:
    members, non_members, population = disjoint_records(40, 40, 80)
    privaudit.train(members, out=tmp_path / "model", epochs=2, batch_size=16, max_length=16, architecture=TINY_ARCH)
    calls: list[tuple] = []
    result = privaudit.audit_membership(
        tmp_path / "model",
        members=members,
        non_members=non_members,
        population=population,
        attacks="loss,lira-offline",
        attack_options={"lira-offline": {"fixed_variance": True}},
        reference_models=1,
        cache_dir=tmp_path / "cache",
        progress=lambda *call: calls.append(call),
    )
    assert capfd.readouterr() == ("", "")
    assert result.n_reference_models == 1 and [a.name for a in result.attacks] == ["loss", "lira-offline"]
    assert result.attacks[1].params["fixed_variance"] is True
    stages = {c[0] for c in calls}
    assert {"scoring", "reference models", "training reference model 1", "attacks"} <= stages
    assert any((tmp_path / "cache").rglob("model.safetensors"))


def test_dp_training_prints_nothing(tmp_path: Path, capfd) -> None:
    summary = privaudit.train(
        make_records(60),
        out=tmp_path / "dp",
        epochs=1,
        batch_size=16,
        max_length=16,
        dp=True,
        target_epsilon=8.0,
        delta=1e-3,
        architecture=TINY_ARCH,
    )
    assert capfd.readouterr() == ("", "")
    assert summary["epsilon"].startswith("8.0") or float(summary["epsilon"].split()[0]) <= 8.0
    assert privaudit.epsilon(model_dir=tmp_path / "dp") == pytest.approx(float(summary["epsilon"].split()[0]), abs=1e-3)


def test_audit_membership_reads_a_data_frame(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(first(MEMBERS, 30))
    from_frame = privaudit.audit_membership(FIXTURE_MODEL, members=frame, non_members=first(NON_MEMBERS, 30))
    from_file = privaudit.audit_membership(
        FIXTURE_MODEL, members=write_jsonl(tmp_path / "m.jsonl", first(MEMBERS, 30)), non_members=first(NON_MEMBERS, 30)
    )
    assert from_frame.to_json() == from_file.to_json()


def test_audit_membership_errors_are_the_commands(run_cli, tmp_path: Path) -> None:
    with pytest.raises(privaudit.PrivauditError) as err:
        privaudit.audit_membership(FIXTURE_MODEL, members=str(tmp_path / "missing.jsonl"), non_members=NON_MEMBERS)
    assert str(err.value) == error_line(
        run_cli("mia", FIXTURE_MODEL, "--members", tmp_path / "missing.jsonl", "--non-members", NON_MEMBERS)
    )
    assert str(err.value).startswith(f"{tmp_path / 'missing.jsonl'}: no such file")
    with pytest.raises(privaudit.PrivauditError) as err:
        privaudit.audit_membership(FIXTURE_MODEL, members=MEMBERS, non_members=NON_MEMBERS, attacks="all")
    cli = run_cli("mia", FIXTURE_MODEL, "--members", MEMBERS, "--non-members", NON_MEMBERS, "--attack", "all")
    assert str(err.value) == error_line(cli) and "--population" in str(err.value)
    with pytest.raises(privaudit.PrivauditError, match=r"^<non_members>: only 5 examples; an audit needs at least 10"):
        privaudit.audit_membership(FIXTURE_MODEL, members=first(MEMBERS, 20), non_members=first(NON_MEMBERS, 5))
    with pytest.raises(privaudit.PrivauditError, match=r"^reference_models=-1 is not in the range"):
        privaudit.audit_membership(FIXTURE_MODEL, members=MEMBERS, non_members=NON_MEMBERS, reference_models=-1)


def test_attacks_and_their_options_in_every_form() -> None:
    assert attack_spec(("loss", "entropy")) == attack_spec(["loss", "entropy"]) == "loss,entropy"
    assert attack_spec("loss, rmia") == "loss, rmia" and attack_spec("all") == "all" and attack_spec(None) is None
    with pytest.raises(privaudit.PrivauditError, match="^attacks: expected attack names"):
        attack_spec([1, 2])
    as_dict = attack_option_specs({"rmia": {"a": 0.3, "offline": True}, "lira-offline": {"fixed_variance": None}})
    assert as_dict == ("rmia:a=0.3", "rmia:offline=true", "lira-offline:fixed_variance=none")
    assert attack_option_specs("rmia:a=0.5") == ("rmia:a=0.5",) and attack_option_specs(None) == ()


# --- audit_canaries ----------------------------------------------------------------------------------------------


def test_audit_canaries_is_the_canary_command(run_cli, tiny_model, tmp_path: Path, capfd) -> None:
    calls: list[tuple] = []
    result = privaudit.audit_canaries(
        str(tiny_model.path),
        canaries=str(tiny_model.canaries),
        one_run=True,
        steps=10,
        restarts=2,
        progress=lambda *call: calls.append(call),
    )
    assert capfd.readouterr() == ("", "")
    assert isinstance(result, CanaryResult) and isinstance(result, CanaryAudit)
    assert {c[0] for c in calls} == {"exposure", "ModIvA extraction", "one-run audit"}
    cli = run_cli(
        "canary", tiny_model.path, "-c", tiny_model.canaries, "--one-run", "--steps", 10, "--restarts", 2, "-f", "json"
    )
    assert cli.exit_code == 0, cli.output
    assert without_timings(json.loads(cli.stdout)) == without_timings(json.loads(result.to_json()))
    assert result.to_dict()["summary"]["n_inserted"] == 3 and result.one_run is not None
    text = result.summary()
    assert "canary audit" in text and "one-run audit" in text and "\x1b[" not in text
    result.write_html(tmp_path / "canary.html")
    assert (tmp_path / "canary.html").is_file()


def test_audit_canaries_errors_are_the_commands(run_cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.canaries.jsonl"
    with pytest.raises(privaudit.PrivauditError) as err:
        privaudit.audit_canaries(tmp_path / "no-model", canaries=missing)
    assert str(err.value) == error_line(run_cli("canary", tmp_path / "no-model", "-c", missing))
    with pytest.raises(privaudit.PrivauditError, match=r"^sample=10 is not in the range sample >= 100$"):
        privaudit.audit_canaries(FIXTURE_MODEL, canaries=missing, sample=10)

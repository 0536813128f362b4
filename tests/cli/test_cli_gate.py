"""The gate through the command line: exit codes, config files, report sinks, baselines, and end to end on the fixture.

Most tests replace the audit (``privaudit.mia.run.run_mia``) by a synthetic result, so they test the command's flags,
config and reports in milliseconds. The end-to-end tests run the real audit of ``fixtures/models/intent-tiny``
with ``--attack loss``; its scoring pass is memoised across them (the first runs for real) to keep the suite fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from junitparser import JUnitXml
from typer.testing import CliRunner

import privaudit.mia.run
from privaudit.cli.app import app
from privaudit.mia import registry
from privaudit.mia.run import AttackResult, MiaRequest, MiaResult
from privaudit.stats.metrics import evaluate

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
MEMBERS = ROOT / "fixtures" / "data" / "members.jsonl"
NON_MEMBERS = ROOT / "fixtures" / "data" / "non_members.jsonl"
SCHEMA = json.loads((ROOT / "docs" / "schema-mia.json").read_text(encoding="utf-8"))
runner = CliRunner()


def make_result(*, mu: float = 1.5, epsilon: float | None = 8.0) -> MiaResult:
    """One 'loss' attack whose member scores are shifted by ``mu`` (AUC about 0.85 at 1.5), 200 a side."""
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    scores = np.random.default_rng(0).normal(size=is_member.size) + mu * is_member
    metrics = evaluate(scores, is_member, delta=1e-5, n_bootstrap=200)
    return MiaResult(
        model={"path": "models/target", "fingerprint": "ab" * 32},
        seed=0,
        theoretical_epsilon=epsilon,
        delta=1e-5,
        n_members=200,
        n_non_members=200,
        n_reference_models=0,
        attacks=[AttackResult("loss", "synthetic", {}, metrics, scores)],
        is_member=is_member,
    )


@pytest.fixture
def audit(monkeypatch):
    """Replaces the audit by a synthetic one; ``audit.result`` is what it returns, ``audit.requests`` what it got."""

    class Stub:
        result = make_result()
        requests: list[MiaRequest] = []

        def __call__(self, request, *, progress=None):
            self.requests.append(request)
            return self.result

    stub = Stub()
    monkeypatch.setattr(privaudit.mia.run, "run_mia", stub)
    return stub


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test runs in an empty directory, so no config file is found unless the test writes one."""
    monkeypatch.chdir(tmp_path)


def mia(*args: str):
    return runner.invoke(app, ["mia", "models/target", "--members", "m.jsonl", "--non-members", "n.jsonl", *args])


# --- exit codes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], 0),
        (["--fail-above", "auc=0.99"], 0),
        (["--fail-above", "auc=0.6"], 1),
        (["--fail-above", "loss:auc=0.6"], 1),
        (["--fail-above", "auc=0.99", "--fail-above", "tpr@10%fpr=0.01"], 1),
        (["--fail-above", "auc=0.6", "--exit-zero"], 0),
        (["--fail-above", "tpr@0.1%fpr=0"], 0),  # unsupported with 200 non-members: skipped, not failed
        (["--fail-above", "aucc=0.6"], 2),
        (["--fail-above", "aucc=0.6", "--exit-zero"], 2),
        (["--fail-above", "nosuch:auc=0.6"], 2),
        (["--format", "xml"], 2),
        (["--max-increase", "auc=0.1"], 2),
        (["--baseline", "base.json"], 2),
    ],
)
def test_exit_codes(audit, args, code):
    result = mia(*args)
    assert result.exit_code == code, result.output
    # A flag error is found before the audit runs.
    assert len(audit.requests) == (0 if code == 2 else 1)


def test_breach_message_names_metric_value_interval_and_threshold(audit):
    result = mia("--fail-above", "auc=0.6")
    auc = audit.result.attacks[0].metrics.auc
    line = next(line for line in result.stdout.splitlines() if line.startswith("failed:"))
    assert f"loss: auc = {auc.value:.4g} [95% CI {auc.low:.4g}, {auc.high:.4g}] is above the threshold 0.6" in line
    assert "fail: 1 of 1 checks failed" in result.stdout


def test_errors_are_one_line_on_stderr(audit):
    result = mia("--fail-above", "aucc=0.6")
    assert "error: --fail-above: unknown metric 'aucc'" in result.stderr
    assert "valid metrics: auc, advantage, epsilon_lb, tpr@0.1%fpr, tpr@1%fpr, tpr@10%fpr" in result.stderr


def test_fail_if_bound_exceeds_epsilon(audit):
    audit.result = make_result(epsilon=0.01)
    assert mia().exit_code == 0
    result = mia("--fail-if-bound-exceeds-epsilon")
    assert result.exit_code == 1 and "exceeds the theoretical epsilon 0.01" in result.stdout
    audit.result = make_result(epsilon=None)
    result = mia("--fail-if-bound-exceeds-epsilon")
    assert result.exit_code == 0 and "skipped: loss: epsilon_lb not gated: no theoretical epsilon" in result.stdout


def test_missing_model_exits_2():
    result = runner.invoke(
        app, ["mia", "no/such/model", "--members", str(MEMBERS), "--non-members", str(NON_MEMBERS), "--attack", "loss"]
    )
    assert result.exit_code == 2 and "no/such/model" in result.stderr


class _BrokenEntryPoint:
    name, value, group = "broken", "broken_pkg:Attack", registry.ENTRY_POINT_GROUP

    def load(self):
        raise ImportError("No module named 'torchx'")


def test_broken_plugin_selected_exits_2(monkeypatch):
    monkeypatch.setattr(registry.metadata, "entry_points", lambda *, group: [_BrokenEntryPoint()])
    args = ["mia", str(MODEL), "--members", str(MEMBERS), "--non-members", str(NON_MEMBERS), "--attack", "broken"]
    result = runner.invoke(app, [*args, "--fail-above", "auc=0.99"])
    assert result.exit_code == 2
    assert "attack plugin 'broken'" in result.stderr and "torchx" in result.stderr


def test_unwritable_report_exits_2(audit, tmp_path):
    (tmp_path / "taken").mkdir()
    result = mia("--fail-above", "auc=0.99", "--json-out", "taken")
    assert result.exit_code == 2 and "taken: cannot write the report" in result.stderr


# --- config files ---------------------------------------------------------------------------------------------


def test_config_supplies_defaults_and_flags_win(audit, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.privaudit.mia]\n"
        'model = "models/target"\n'
        'members = "data/m.jsonl"\n'
        'non_members = "data/n.jsonl"\n'
        'attack = ["loss", "entropy"]\n'
        "seed = 7\n"
        'fail_above = { auc = 0.6, "loss:tpr@10%fpr" = 0.99 }\n'
    )
    result = runner.invoke(app, ["mia"])
    assert result.exit_code == 1, result.output
    request = audit.requests[-1]
    assert request.model_dir == tmp_path / "models" / "target"  # relative to the config file
    assert (request.members, request.attacks, request.seed) == (tmp_path / "data" / "m.jsonl", "loss,entropy", 7)
    assert f"{tmp_path / 'pyproject.toml'} tool.privaudit.mia.fail_above" in result.stdout
    # A flag replaces the file's threshold of the same key and keeps the others.
    result = runner.invoke(app, ["mia", "--fail-above", "auc=0.99", "--seed", "3", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert audit.requests[-1].seed == 3
    gate = json.loads(result.stdout)["gate"]
    assert {(t["metric"], t["limit"], t["source"].split()[-1]) for t in gate["thresholds"]} == {
        ("tpr@10%fpr", 0.99, "tool.privaudit.mia.fail_above"),
        ("auc", 0.99, "--fail-above"),
    }


def test_config_bool_flag_and_its_negation(audit, tmp_path):
    audit.result = make_result(epsilon=0.01)
    (tmp_path / "privaudit.toml").write_text("[mia]\nfail_if_bound_exceeds_epsilon = true\n")
    result = mia()
    assert result.exit_code == 1 and "privaudit.toml mia.fail_if_bound_exceeds_epsilon" in result.stdout
    assert mia("--no-fail-if-bound-exceeds-epsilon").exit_code == 0


def test_bad_config_exits_2_naming_file_and_key(audit, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.privaudit.mia]\nseed = 'zero'\n")
    result = mia()
    assert result.exit_code == 2 and not audit.requests
    assert f"{tmp_path / 'pyproject.toml'}: tool.privaudit.mia.seed: expected an integer" in result.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.privaudit.mia]\nfail_above = { aucc = 0.5 }\n")
    result = mia()
    assert result.exit_code == 2 and "tool.privaudit.mia.fail_above: unknown metric 'aucc'" in result.stderr


def test_explicit_config_file(audit, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.privaudit.mia]\nseed = 'broken, but not read'\n")
    other = tmp_path / "ci" / "gate.toml"
    other.parent.mkdir()
    other.write_text("[mia]\nfail_above = { auc = 0.6 }\n")
    assert mia("--config", str(other)).exit_code == 1
    result = mia("--config", "ci/missing.toml")
    assert result.exit_code == 2 and "ci/missing.toml: --config names no file" in result.stderr


# --- formats and sinks ----------------------------------------------------------------------------------------


def test_json_on_stdout_validates_and_human_output_goes_to_stderr(audit):
    result = mia("--fail-above", "auc=0.6", "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    assert document["gate"]["verdict"] == "fail" and document["gate"]["exit_code"] == 1
    assert "membership inference" in result.stderr and "fail: 1 of 1 checks failed" in result.stderr


def test_several_sinks_in_one_run(audit, tmp_path):
    result = mia(
        "--fail-above",
        "auc=0.6",
        "--format",
        "github",
        "--json-out",
        "out/r.json",
        "--junit-out",
        "out/r.xml",
        "--sarif-out",
        "out/r.sarif",
        "--markdown-out",
        "out/r.md",
        "-o",
        "out/annotations.txt",
        "--exit-zero",
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert (out / "annotations.txt").read_text().startswith("::error file=models/target/config.json,")
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads((out / "r.json").read_text()))
    assert json.loads((out / "r.json").read_text())["gate"]["exit_zero"] is True
    (suite,) = list(JUnitXml.fromfile(str(out / "r.xml")))
    assert (suite.tests, suite.failures) == (1, 1)
    sarif = json.loads((out / "r.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"][0]["ruleId"] == "auc-above-threshold"
    assert (out / "r.md").read_text().startswith("### ❌ privaudit mia: fail")
    assert "membership inference" in result.stdout  # -o took the machine format, so the table is on stdout
    assert not list(out.glob("*.tmp"))


def test_table_to_a_file_holds_the_gate(audit, tmp_path):
    assert mia("--fail-above", "auc=0.99", "-o", "report.txt").exit_code == 0
    text = (tmp_path / "report.txt").read_text()
    assert "membership inference" in text and "pass: 1 check passed" in text


# --- baselines ------------------------------------------------------------------------------------------------


def test_baseline_save_and_regressions(audit, tmp_path):
    assert mia("--save-baseline", "base.json", "--json-out", "result.json").exit_code == 0
    saved = runner.invoke(app, ["baseline", "save", "result.json", "-o", "base2.json"])
    assert saved.exit_code == 0, saved.output
    first, second = (json.loads((tmp_path / f).read_text()) for f in ("base.json", "base2.json"))
    assert first["measurements"] == second["measurements"] and first["schema"] == "privaudit.baseline/1"
    # Same audit again: no increase at all.
    assert mia("--baseline", "base.json", "--max-increase", "auc=0").exit_code == 0
    # A leakier model: AUC rises beyond the allowed increase.
    audit.result = make_result(mu=2.5)
    result = mia("--baseline", "base.json", "--max-increase", "auc=0.02", "--max-increase", "advantage=0.9")
    assert result.exit_code == 1 and "rose more than the allowed 0.02" in result.stdout
    assert mia("--baseline", "base.json", "--max-increase", "auc=0.5").exit_code == 0


def test_baseline_errors_exit_2(audit, tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"schema": "privaudit.baseline/1", "measurements": []}))
    result = runner.invoke(app, ["baseline", "save", "result.json"])
    assert result.exit_code == 2 and "cannot make a baseline" in result.stderr
    result = mia("--baseline", "missing.json", "--max-increase", "auc=0.1")
    assert result.exit_code == 2 and "missing.json: cannot read" in result.stderr and not audit.requests
    assert runner.invoke(app, ["baseline"]).exit_code == 2


# --- end to end on the fixture model --------------------------------------------------------------------------

_AUDITS: dict[MiaRequest, MiaResult] = {}


@pytest.fixture
def memoised_audit(monkeypatch):
    """The real audit, run once per distinct request (paths resolved) for all the end-to-end tests."""
    real = privaudit.mia.run.run_mia

    def run(request, *, progress=None):
        key = dataclasses.replace(
            request, **{f: getattr(request, f).resolve() for f in ("model_dir", "members", "non_members")}
        )
        if key not in _AUDITS:
            _AUDITS[key] = real(request, progress=progress)
        return _AUDITS[key]

    monkeypatch.setattr(privaudit.mia.run, "run_mia", run)
    return _AUDITS


E2E = ["mia", str(MODEL), "--members", str(MEMBERS), "--non-members", str(NON_MEMBERS), "--attack", "loss"]


def test_end_to_end_strict_threshold_fails(memoised_audit):
    result = runner.invoke(app, [*E2E, "--fail-above", "auc=0.55", "--format", "json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    (loss,) = document["attacks"]
    assert 0.65 < loss["auc"]["value"] < 0.75  # the fixture's LOSS AUC is about 0.70
    assert document["gate"]["checks"][0]["status"] == "failed"


def test_end_to_end_loose_threshold_passes(memoised_audit):
    result = runner.invoke(app, [*E2E, "--fail-above", "auc=0.95", "--sarif-out", "gate.sarif"])
    assert result.exit_code == 0, result.output
    assert json.loads(Path("gate.sarif").read_text())["runs"][0]["results"] == []


def test_end_to_end_through_pyproject(memoised_audit, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.privaudit.mia]\n"
        f"model = '{MODEL}'\n"
        f"members = '{MEMBERS}'\n"
        f"non_members = '{NON_MEMBERS}'\n"
        'attack = "loss"\n'
        "fail_above = { auc = 0.55 }\n"
    )
    audits_before = len(memoised_audit)
    strict = runner.invoke(app, ["mia", "--format", "junit"])
    assert strict.exit_code == 1, strict.output
    (suite,) = list(JUnitXml.fromstring(strict.stdout))
    assert (suite.tests, suite.failures) == (1, 1)
    (tmp_path / "pyproject.toml").write_text(
        (tmp_path / "pyproject.toml").read_text().replace("auc = 0.55", "auc = 0.95")
    )
    assert runner.invoke(app, ["mia"]).exit_code == 0
    # The config's paths made the same request as the flags did.
    assert len(memoised_audit) == max(audits_before, 1)

"""The gate of ``privaudit canary``: measurements, exit codes, config, report sinks, baselines, end to end.

Most tests replace the audit (``privaudit.canary.run.run_canary``) by a synthetic result over a small canary file, so
they test the command's flags and reports in milliseconds. The end-to-end tests run the real exposure audit of
``fixtures/models/intent-tiny`` with ``--no-extract`` once for the module (its exposure pass takes seconds; ModIvA,
minutes) and reuse it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
from junitparser import Failure, JUnitXml, Skipped
from typer.testing import CliRunner

import privaudit.canary.run
from privaudit.canary.canaries import Canary, write_canaries
from privaudit.canary.modiva import ModivaResult
from privaudit.canary.run import CanaryRequest, CanaryResult, CanaryRow
from privaudit.cli.app import app
from privaudit.gate.gate import (
    epsilon_claim,
    parse_threshold,
    run_gate,
)
from privaudit.gate.measurements import (
    CANARY_METRICS,
    canary_measurements,
    canary_subjects,
    measurements_from_canary_dict,
)
from privaudit.stats.onerun import OneRunResult

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
CANARIES = ROOT / "fixtures" / "models" / "intent-tiny.canaries.jsonl"
SCHEMA = json.loads((ROOT / "docs" / "schema-canary.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
runner = CliRunner()

DIGITS = tuple("0123456789")
TEMPLATE = "my pin code is {d} {d} {d} {d}"
# canaries[i] of the report: three inserted, then three controls; the one with 13 bits must never be gated.
EXPOSURES = (12.0, 4.0, 8.0, 1.0, 13.0, 0.5)
INSERTED = (True, True, True, False, False, False)


def make_canaries() -> list[Canary]:
    """An audit canary first (not one of the report's canaries), then three inserted canaries and three controls."""
    audit = Canary(TEMPLATE, (DIGITS,) * 4, tuple("9999"), "set_alarm", 1, True, kind="audit")
    exposure = [
        Canary(TEMPLATE, (DIGITS,) * 4, (str(i),) * 4, "get_weather", 10 if inserted else 0, inserted)
        for i, inserted in enumerate(INSERTED)
    ]
    return [audit, *exposure]


def extraction(canary: Canary, recovered: bool) -> ModivaResult:
    guess = canary.secret if recovered else ("0", "1", "2", "3")
    return ModivaResult(
        secret=canary.secret,
        guess=guess,
        recovered=recovered,
        slot_accuracy=1.0 if recovered else 0.25,
        rank=1 if recovered else 42,
        top_k=((guess, 0.5),),
        space_size=10_000,
        random_baseline=1e-4,
        guess_method="exhaustive",
        search_guess=guess,
        search_recovered=recovered,
        exact_budget=100_000,
        seconds=0.1,
        inserted=canary.inserted,
    )


def make_result(
    *, epsilon: float | None = 8.0, bound: float | None = 1.2, extract: bool = True, exposure: bool = True
) -> CanaryResult:
    """Canary 0 of the report is recovered by ModIvA; ``bound`` is the one-run bound (``None``: not run)."""
    rows = []
    for i, c in enumerate(make_canaries()[1:]):
        row = CanaryRow(canary=c, loss=0.1 * (i + 1), exposure=EXPOSURES[i] if exposure else None)
        if extract:
            row.extraction = extraction(c, recovered=i == 0)
        rows.append(row)
    one_run = None
    if bound is not None:
        one_run = OneRunResult(bound, 8, 4, 4, 2, 2, 1e-5, 0.05, 0.025, (2, 4), (bound / 2, bound))
    return CanaryResult(
        model={"path": "models/target", "fingerprint": "ab" * 32, "canaries": "c.jsonl"},
        seed=0,
        theoretical_epsilon=epsilon,
        delta=1e-5,
        rows=rows,
        exposure_method="rank" if exposure else None,
        one_run=one_run,
    )


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test runs in an empty directory (no config file unless it writes one), with ``c.jsonl`` in it."""
    monkeypatch.chdir(tmp_path)
    write_canaries(tmp_path / "c.jsonl", make_canaries())


@pytest.fixture
def audit(monkeypatch):
    """Replaces the audit by a synthetic one; ``audit.result`` is what it returns, ``audit.requests`` what it got."""

    class Stub:
        result = make_result()
        requests: list[CanaryRequest] = []

        def __call__(self, request, *, progress=None):
            self.requests.append(request)
            return self.result

    stub = Stub()
    monkeypatch.setattr(privaudit.canary.run, "run_canary", stub)
    return stub


def canary(*args: str):
    return runner.invoke(app, ["canary", "models/target", "-c", "c.jsonl", *args], env={"COLUMNS": "200"})


# --- measurements ---------------------------------------------------------------------------------------------


def test_measurements_per_canary_and_for_the_set():
    measured = {(m.subject, m.metric): m for m in canary_measurements(make_result())}
    assert measured[("canaries", "exposure")].value == 12.0  # the controls' 13 bits are chance, not a leak
    assert measured[("canaries", "extracted")].value == 1
    assert [measured[(f"canary:{i}", "exposure")].value for i in range(3)] == [12.0, 4.0, 8.0]
    assert [measured[(f"canary:{i}", "extracted")].value for i in range(3)] == [1, 0, 0]
    assert not any(s in {"canary:3", "canary:4", "canary:5"} for s, _ in measured)
    bound = measured[("one-run", "one_run_epsilon_lb")]
    assert (bound.value, bound.confidence) == (1.2, pytest.approx(0.95))
    assert {metric for _, metric in measured} == set(CANARY_METRICS)


def test_measures_not_run_are_skipped_with_a_reason():
    measured = {(m.subject, m.metric): m for m in canary_measurements(make_result(extract=False, bound=None))}
    assert measured[("canaries", "extracted")].value is None
    assert "--no-extract" in measured[("canaries", "extracted")].note
    assert measured[("one-run", "one_run_epsilon_lb")].value is None
    assert "--one-run" in measured[("one-run", "one_run_epsilon_lb")].note
    assert ("canary:0", "extracted") not in measured
    no_exposure = {(m.subject, m.metric): m for m in canary_measurements(make_result(exposure=False))}
    assert no_exposure[("canaries", "exposure")].value is None and ("canary:0", "exposure") not in no_exposure


def test_measurements_from_the_json_document_match():
    result = make_result()
    assert measurements_from_canary_dict(result.to_dict()) == canary_measurements(result)
    with pytest.raises(Exception, match="not a privaudit.canary/1 document"):
        measurements_from_canary_dict({"schema": "privaudit.canary/1"})


def test_subjects_follow_the_reports_canaries_array():
    assert canary_subjects(make_canaries()) == ["canaries", "one-run", "canary:0", "canary:1", "canary:2"]


def test_one_threshold_checks_the_set_and_each_canary():
    thresholds = [
        parse_threshold("exposure=10", metrics=CANARY_METRICS),
        epsilon_claim(1.0, metric="one_run_epsilon_lb"),
    ]
    gate = run_gate(canary_measurements(make_result()), thresholds)
    assert [(c.subject, c.status) for c in gate.checks] == [
        ("canaries", "failed"),
        ("canary:0", "failed"),
        ("canary:1", "passed"),
        ("canary:2", "passed"),
        ("one-run", "failed"),
    ]


# --- exit codes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], 0),
        (["--fail-above", "exposure=12.5"], 0),
        (["--fail-above", "exposure=10"], 1),
        (["--fail-above", "canary:1:exposure=5"], 0),
        (["--fail-above", "canary:2:exposure=5"], 1),
        (
            [
                "--fail-above",
                "exposure=10",
                "--fail-above",
                "canary:0:exposure=20",
                "--fail-above",
                "canaries:exposure=20",
            ],
            0,
        ),
        (["--fail-above", "extracted=0"], 1),
        (["--fail-above", "canaries:extracted=1"], 0),
        (["--fail-above", "one_run_epsilon_lb=2"], 0),
        (["--fail-above", "one-run:one_run_epsilon_lb=1"], 1),
        (["--fail-above", "extracted=0", "--exit-zero"], 0),
        (["--fail-above", "auc=0.6"], 2),
        (["--fail-above", "canary:3:exposure=5"], 2),  # a control: never a subject
        (["--fail-above", "canary:9:exposure=5"], 2),
        (["--fail-above", "extracted=0", "--exit-zero", "--fail-above", "nosuch:exposure=1"], 2),
        (["--format", "xml"], 2),
        (["--max-increase", "exposure=1"], 2),
        (["--baseline", "base.json"], 2),
    ],
)
def test_exit_codes(audit, args, code):
    result = canary(*args)
    assert result.exit_code == code, result.output
    assert len(audit.requests) == (0 if code == 2 else 1)  # a flag error is found before the audit runs


def test_breach_and_error_messages(audit):
    result = canary("--fail-above", "exposure=10")
    assert "failed: canaries: exposure = 12 is above the threshold 10 (--fail-above)" in result.stdout
    assert "failed: canary:0: exposure = 12 is above the threshold 10" in result.stdout
    assert "fail: 2 of 4 checks failed" in result.stdout
    result = canary("--fail-above", "canary:7:exposure=5")
    assert "error: --fail-above: unknown subject 'canary:7' in 'canary:7:exposure'" in result.stderr
    assert "choose from: canaries, one-run, canary:0, canary:1, canary:2" in result.stderr
    result = canary("--fail-above", "auc=0.6")
    assert "valid metrics: exposure, extracted, one_run_epsilon_lb" in result.stderr


def test_missing_canary_file_exits_2_before_the_audit(audit):
    result = runner.invoke(app, ["canary", "models/target", "-c", "nope.jsonl", "--fail-above", "exposure=10"])
    assert result.exit_code == 2 and "nope.jsonl: no such canary file" in result.stderr
    assert not audit.requests


def test_missing_model_exits_2():
    result = runner.invoke(app, ["canary", "no/such/model", "-c", "c.jsonl", "--no-extract"])
    assert result.exit_code == 2 and "no/such/model" in result.stderr


def test_fail_if_bound_exceeds_epsilon(audit):
    audit.result = make_result(epsilon=0.5, bound=1.2)
    assert canary().exit_code == 0
    result = canary("--fail-if-bound-exceeds-epsilon")
    assert (
        result.exit_code == 1
        and "one-run: one_run_epsilon_lb = 1.2 exceeds the theoretical epsilon 0.5" in result.stdout
    )
    audit.result = make_result(epsilon=None)
    result = canary("--fail-if-bound-exceeds-epsilon")
    assert (
        result.exit_code == 0
        and "skipped: one-run: one_run_epsilon_lb not gated: no theoretical epsilon" in result.stdout
    )
    audit.result = make_result(epsilon=0.5, bound=None)
    result = canary("--fail-if-bound-exceeds-epsilon")
    assert result.exit_code == 0 and "the one-run audit was not run (pass --one-run)" in result.stdout


def test_extracted_without_extraction_is_skipped(audit):
    audit.result = make_result(extract=False)
    result = canary("--fail-above", "extracted=0")
    assert result.exit_code == 0, result.output
    assert "skipped: canaries: extracted not gated: ModIvA extraction was not run (--no-extract)" in result.stdout
    assert "pass: 0 checks passed, 1 skipped" in result.stdout


# --- config files ---------------------------------------------------------------------------------------------


def test_config_supplies_defaults_and_flags_win(audit, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.privaudit.canary]\n"
        'model = "models/target"\n'
        'canaries = "c.jsonl"\n'
        "one_run = true\n"
        "extract = false\n"
        "steps = 7\n"
        'fail_above = { exposure = 10, "canary:1:exposure" = 3 }\n'
    )
    result = runner.invoke(app, ["canary"])
    assert result.exit_code == 1, result.output
    request = audit.requests[-1]
    assert (request.model_dir, request.canaries) == (tmp_path / "models" / "target", tmp_path / "c.jsonl")
    assert (request.one_run, request.extract, request.modiva_steps) == (True, False, 7)
    assert f"{tmp_path / 'pyproject.toml'} tool.privaudit.canary.fail_above" in result.stdout
    result = runner.invoke(app, ["canary", "--no-one-run", "--fail-above", "exposure=20", "--format", "json"])
    assert result.exit_code == 1, result.output  # canary:1:exposure = 3 still applies
    assert audit.requests[-1].one_run is False
    thresholds = json.loads(result.stdout)["gate"]["thresholds"]
    assert {(t["subject"], t["limit"], t["source"].split()[-1]) for t in thresholds} == {
        ("canary:1", 3.0, "tool.privaudit.canary.fail_above"),
        (None, 20.0, "--fail-above"),
    }


def test_config_bool_flag_in_privaudit_toml(audit, tmp_path):
    audit.result = make_result(epsilon=0.5)
    (tmp_path / "privaudit.toml").write_text("[canary]\nfail_if_bound_exceeds_epsilon = true\n")
    result = canary()
    assert result.exit_code == 1 and "privaudit.toml canary.fail_if_bound_exceeds_epsilon" in result.stdout
    assert canary("--no-fail-if-bound-exceeds-epsilon").exit_code == 0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("sample = 5", ": tool.privaudit.canary.sample: expected an integer >= 100"),
        ("one_run = 'yes'", ": tool.privaudit.canary.one_run: expected true or false"),
        ("fail_above = { auc = 0.5 }", " tool.privaudit.canary.fail_above: unknown metric 'auc'"),
        ("allow_pickle = true", ": unknown key tool.privaudit.canary.allow_pickle"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(audit, tmp_path, table, message):
    (tmp_path / "pyproject.toml").write_text(f"[tool.privaudit.canary]\n{table}\n")
    result = canary()
    assert result.exit_code == 2 and not audit.requests
    assert f"{tmp_path / 'pyproject.toml'}{message}" in result.stderr


# --- formats and sinks ----------------------------------------------------------------------------------------


def test_json_on_stdout_validates_and_human_output_goes_to_stderr(audit):
    result = canary("--fail-above", "exposure=10", "--fail-if-bound-exceeds-epsilon", "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    VALIDATOR.validate(document)
    assert document["schema"] == "privaudit.canary/1" and document["canaries"][0]["extraction"]["recovered"]
    assert document["gate"]["verdict"] == "fail" and document["gate"]["summary"] == {
        "passed": 3,
        "failed": 2,
        "skipped": 0,
    }
    assert "canary audit" in result.stderr and "fail: 2 of 5 checks failed" in result.stderr


def test_schema_covers_runs_without_measures_and_rejects_drift():
    bare = make_result(epsilon=None, bound=None, extract=False, exposure=False)
    VALIDATOR.validate(bare.to_dict())
    drifted = make_result().to_dict()
    drifted["canaries"][0]["exposure_bits"] = 1.0
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(drifted)


def test_schema_shares_the_gate_with_mia():
    mia = json.loads((ROOT / "docs" / "schema-mia.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for name in ("threshold", "check", "gate", "nullable_number"):
        assert SCHEMA["$defs"][name] == mia["$defs"][name], name


def test_several_sinks_in_one_run(audit, tmp_path):
    result = canary(
        "--fail-above",
        "exposure=10",
        "--fail-above",
        "extracted=5",
        "--fail-above",
        "one_run_epsilon_lb=2",
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
    annotations = (out / "annotations.txt").read_text().splitlines()
    assert len(annotations) == 2 and annotations[0].startswith("::error file=models/target/config.json,")
    assert "title=privaudit canary%3A canaries exposure <= 10" in annotations[0]
    document = json.loads((out / "r.json").read_text())
    VALIDATOR.validate(document)
    assert document["gate"]["exit_zero"] is True
    (suite,) = list(JUnitXml.fromfile(str(out / "r.xml")))
    assert suite.name == "privaudit canary models/target"
    assert (suite.tests, suite.failures, suite.skipped) == (4 + 4 + 1, 2, 0)
    failed = {(case.classname, case.name) for case in suite if any(isinstance(r, Failure) for r in case.result)}
    assert failed == {("privaudit.canaries", "exposure <= 10"), ("privaudit.canary:0", "exposure <= 10")}
    sarif = json.loads((out / "r.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {
        "exposure-above-threshold",
        "extracted-above-threshold",
        "one-run-epsilon-lb-above-threshold",
    }
    assert [r["properties"]["subject"] for r in run["results"]] == ["canaries", "canary:0"]
    for r in run["results"]:
        assert r["ruleId"] == "exposure-above-threshold" and r["level"] == "error"
        assert run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"]
        location = r["locations"][0]["physicalLocation"]["artifactLocation"]
        assert location == {"uri": "models/target/config.json", "uriBaseId": "%SRCROOT%"}
    assert run["invocations"] == [{"executionSuccessful": True, "exitCode": 0}]
    markdown = (out / "r.md").read_text()
    assert markdown.startswith("### ❌ privaudit canary: fail: 2 of 9 checks failed")
    assert "| canary:0 | `my pin code is 0 0 0 0` | get_weather | 12.00 | yes |" in markdown
    assert "| inserted | 8.00 | 12.00 | 1 of 3 |" in markdown
    assert "canary audit" in result.stdout  # -o took the machine format, so the table is on stdout
    assert not list(out.glob("*.tmp"))


def test_table_to_a_file_and_html_report(audit, tmp_path):
    assert canary("--fail-above", "exposure=20", "-o", "report.txt", "--report", "report.html").exit_code == 0
    text = (tmp_path / "report.txt").read_text()
    assert "canary audit" in text and "pass: 4 checks passed" in text
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


# --- baselines ------------------------------------------------------------------------------------------------


def test_baseline_save_and_regressions(audit, tmp_path):
    assert canary("--save-baseline", "base.json", "--json-out", "result.json").exit_code == 0
    saved = runner.invoke(app, ["baseline", "save", "result.json", "-o", "base2.json"])
    assert saved.exit_code == 0, saved.output
    first, second = (json.loads((tmp_path / f).read_text()) for f in ("base.json", "base2.json"))
    assert first["measurements"] == second["measurements"]
    assert first["source"]["schema"] == "privaudit.canary/1"
    assert canary("--baseline", "base.json", "--max-increase", "exposure=0").exit_code == 0
    leakier = make_result()
    leakier.rows[1].exposure = 9.0  # canary:1 rose from 4 to 9 bits; the set's maximum stays at 12
    audit.result = leakier
    result = canary("--baseline", "base.json", "--max-increase", "exposure=2")
    assert result.exit_code == 1, result.output
    assert "canary:1: exposure = 9, baseline 4 (+5) rose more than the allowed 2" in result.stdout
    assert canary("--baseline", "base.json", "--max-increase", "canaries:exposure=0").exit_code == 0


# --- end to end on the fixture model --------------------------------------------------------------------------

_AUDITS: dict[CanaryRequest, CanaryResult] = {}


@pytest.fixture
def memoised_audit(monkeypatch):
    """The real audit, run once per distinct request (paths resolved) for all the end-to-end tests."""
    real = privaudit.canary.run.run_canary

    def run(request, *, progress=None):
        key = dataclasses.replace(request, model_dir=request.model_dir.resolve(), canaries=request.canaries.resolve())
        if key not in _AUDITS:
            _AUDITS[key] = real(request, progress=progress)
        return _AUDITS[key]

    monkeypatch.setattr(privaudit.canary.run, "run_canary", run)
    return _AUDITS


E2E = ["canary", str(MODEL), "-c", str(CANARIES), "--no-extract"]


def test_end_to_end_strict_threshold_fails(memoised_audit):
    result = runner.invoke(app, [*E2E, "--fail-above", "exposure=5", "--format", "json", "--junit-out", "r.xml"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    VALIDATOR.validate(document)
    # Measured: the inserted canaries reach 11.7 bits; the controls stay near chance.
    assert 10 < document["summary"]["max_exposure_inserted"] < 13
    checks = {c["subject"]: c for c in document["gate"]["checks"]}
    assert checks["canaries"]["status"] == "failed" and checks["canaries"]["value"] > 10
    assert len(checks) == 1 + document["summary"]["n_inserted"]
    (suite,) = list(JUnitXml.fromfile("r.xml"))
    assert (
        suite.tests == len(checks) and suite.failures >= 1 and suite.failures == document["gate"]["summary"]["failed"]
    )


def test_end_to_end_loose_threshold_passes(memoised_audit):
    args = [*E2E, "--fail-above", "exposure=20", "--fail-above", "extracted=0", "--sarif-out", "gate.sarif"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(Path("gate.sarif").read_text())["runs"][0]["results"] == []
    assert "skipped: canaries: extracted not gated: ModIvA extraction was not run" in result.stdout
    (suite,) = list(JUnitXml.fromstring(runner.invoke(app, [*args, "--format", "junit"]).stdout))
    skipped = [case for case in suite if any(isinstance(r, Skipped) for r in case.result)]
    assert [case.classname for case in skipped] == ["privaudit.canaries"]
    assert len(memoised_audit) == 1  # every end-to-end test shares the one audit

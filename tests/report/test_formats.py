"""Tests for privaudit.report.formats: JSON against docs/schema-mia.json, JUnit through a JUnit parser, SARIF 2.1.0
structure, GitHub annotation escaping and the Markdown summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from junitparser import Failure, JUnitXml, Skipped
from rich.console import Console

from privaudit.gate.gate import (
    Threshold,
    epsilon_claim,
    parse_threshold,
    run_gate,
)
from privaudit.gate.measurements import (
    Measurement,
    mia_measurements,
    mia_metrics,
)
from privaudit.mia.run import AttackResult, MiaResult
from privaudit.report import formats
from privaudit.stats.metrics import evaluate

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "schema-mia.json"
N_PER_SIDE = 200


def make_result(*, model: dict | None = None, epsilon: float | None = 8.0) -> MiaResult:
    """A strong (loss) and a weak (lira-offline) attack on 200 members and 200 non-members."""
    is_member = np.r_[np.ones(N_PER_SIDE, bool), np.zeros(N_PER_SIDE, bool)]
    attacks = []
    for i, (name, mu) in enumerate((("loss", 1.5), ("lira-offline", 0.2))):
        scores = np.random.default_rng(i).normal(size=is_member.size) + mu * is_member
        metrics = evaluate(scores, is_member, delta=1e-5, n_bootstrap=200, seed=i)
        attacks.append(AttackResult(name, f"{name}, synthetic", {"k": 1}, metrics, scores))
    return MiaResult(
        model=model or {"path": "models/target", "fingerprint": "ab" * 32},
        seed=0,
        theoretical_epsilon=epsilon,
        delta=1e-5,
        n_members=N_PER_SIDE,
        n_non_members=N_PER_SIDE,
        n_reference_models=0,
        attacks=attacks,
        is_member=is_member,
    )


@pytest.fixture(scope="module")
def result() -> MiaResult:
    return make_result()


@pytest.fixture(scope="module")
def gate(result):
    """Every status: loss fails auc, lira-offline passes it, tpr@0.1%fpr is unsupported, one increase fails."""
    metrics = mia_metrics()
    thresholds = [
        parse_threshold("auc=0.6", metrics=metrics, source="--fail-above"),
        parse_threshold("tpr@0.1%fpr=0.5", metrics=metrics, source="--fail-above"),
        parse_threshold("loss:advantage=0.01", kind="max_increase", metrics=metrics, source="--max-increase"),
        epsilon_claim(8.0),
    ]
    baseline = [Measurement("loss", "advantage", 0.1)]
    return run_gate(mia_measurements(result), thresholds, baseline=baseline, baseline_name="base.json")


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --- JSON -----------------------------------------------------------------------------------------------------


def test_json_is_the_audit_plus_the_gate(result, gate, validator):
    document = json.loads(formats.to_json(result, gate))
    assert document == json.loads(json.dumps({**result.to_dict(), "gate": gate.to_dict()}))
    assert document["schema"] == "privaudit.mia/1"
    validator.validate(document)
    assert document["gate"]["verdict"] == "fail" and document["gate"]["baseline"] == "base.json"
    assert {c["status"] for c in document["gate"]["checks"]} == {"passed", "failed", "skipped"}


def test_schema_covers_scores_audits_no_dp_and_no_gate(validator):
    result = make_result(model={"path": None, "fingerprint": None, "scores": "scores.csv"}, epsilon=None)
    validator.validate(result.to_dict())  # the library's own dict, without the gate
    no_gate = run_gate(mia_measurements(result), [epsilon_claim(None)])
    validator.validate(formats.mia_document(result, no_gate))


def test_schema_rejects_drift(result, gate, validator):
    document = formats.mia_document(result, gate)
    for broken in (
        {**document, "schema": "privaudit.mia/2"},
        {**document, "surprise": 1},
        {**document, "gate": {**document["gate"], "verdict": "maybe"}},
        {k: v for k, v in document.items() if k != "attacks"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(json.loads(json.dumps(broken)))


# --- JUnit ----------------------------------------------------------------------------------------------------


def test_junit_one_case_per_check(gate):
    text = formats.to_junit(gate, suite="privaudit mia models/target", properties={"model.fingerprint": "ab"})
    xml = JUnitXml.fromstring(text)
    (suite,) = list(xml)
    assert suite.name == "privaudit mia models/target"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (
        len(gate.checks),
        len(gate.failed),
        0,
        len(gate.by_status("skipped")),
    )
    cases = {(c.classname, c.name): c for c in suite}
    assert len(cases) == len(gate.checks)
    breach = cases[("privaudit.loss", "auc <= 0.6")]
    (failure,) = breach.result
    assert isinstance(failure, Failure) and "above the threshold 0.6" in failure.message
    assert failure.type == "fail_above"
    assert cases[("privaudit.lira-offline", "auc <= 0.6")].is_passed
    skipped = cases[("privaudit.loss", "tpr@0.1%fpr <= 0.5")]
    assert isinstance(skipped.result[0], Skipped) and "non-members" in skipped.result[0].message
    assert cases[("privaudit.loss", "advantage increase <= 0.01")].result[0].type == "max_increase"
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["verdict"] == "fail" and properties["model.fingerprint"] == "ab"


# --- SARIF ----------------------------------------------------------------------------------------------------


def test_sarif_2_1_0_structure(gate):
    sarif = json.loads(formats.to_sarif(gate, location="models/target/config.json"))
    assert sarif["version"] == "2.1.0" and sarif["$schema"] == formats.SARIF_SCHEMA
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "privaudit" and driver["version"]
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(set(rule_ids)) == len(rule_ids)
    assert {"auc-above-threshold", "tpr-at-0-1pct-fpr-above-threshold", "advantage-increase"} <= set(rule_ids)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["defaultConfiguration"]["level"] == "error"
    assert len(run["results"]) == len(gate.failed)
    for res in run["results"]:
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["level"] == "error" and res["message"]["text"]
        (location,) = res["locations"]
        artifact = location["physicalLocation"]["artifactLocation"]
        assert artifact == {"uri": "models/target/config.json", "uriBaseId": "%SRCROOT%"}
        assert location["physicalLocation"]["region"]["startLine"] == 1
    assert run["invocations"][0]["exitCode"] == 1


def test_sarif_absolute_location_is_a_file_uri(gate):
    sarif = json.loads(formats.to_sarif(gate, location="/srv/my models/config.json"))
    artifact = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": "file:///srv/my%20models/config.json"}


def test_sarif_without_breaches_has_no_results(result):
    passing = run_gate(mia_measurements(result), [parse_threshold("auc=0.99", metrics=mia_metrics())])
    assert json.loads(formats.to_sarif(passing, location="m/config.json"))["runs"][0]["results"] == []


def test_artifact_location_is_relative_to_the_working_directory(result, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert formats.artifact_location(result) == "models/target/config.json"
    scores = make_result(model={"path": None, "fingerprint": None, "scores": "runs/scores.csv"})
    assert formats.artifact_location(scores) == "runs/scores.csv"
    outside = make_result(model={"path": "/elsewhere/model", "fingerprint": None})
    assert formats.artifact_location(outside) == "/elsewhere/model/config.json"


# --- GitHub ---------------------------------------------------------------------------------------------------


def test_github_annotations(gate):
    lines = formats.to_github(gate, location="models/target/config.json").splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    warnings = [line for line in lines if line.startswith("::warning ")]
    assert len(errors) == len(gate.failed) and len(warnings) == len(gate.by_status("skipped"))
    assert len(lines) == len(errors) + len(warnings)
    assert errors[0].startswith("::error file=models/target/config.json,title=privaudit mia%3A loss auc <= 0.6::")
    assert "[95%25 CI" in errors[0]  # % is escaped in the message


def test_github_escapes_properties_and_data():
    m = Measurement("a,b:c", "auc", 0.9)
    gate = run_gate([m], [Threshold("fail_above", "auc", 0.5, source="cfg\r\n100%")])
    (line,) = formats.to_github(gate, location="dir,x/fi:le.json").splitlines()
    prefix, _, message = line.partition("::")[2].partition("::")
    assert prefix == "error file=dir%2Cx/fi%3Ale.json,title=privaudit mia%3A a%2Cb%3Ac auc <= 0.5"
    assert message.endswith("(cfg%0D%0A100%25)") and "\n" not in line and "\r" not in line


# --- Markdown and terminal ------------------------------------------------------------------------------------


def test_markdown_summary(result, gate):
    text = formats.to_markdown(result, gate)
    first = text.splitlines()[0]
    assert first.startswith("### ❌ privaudit mia: fail: 2 of") and "skipped" in first
    assert "| attack | AUC | TPR@0.1% FPR | TPR@1% FPR | TPR@10% FPR | advantage | ε lower bound |" in text
    assert "| loss | " in text and "| lira-offline | " in text and "n/a (too few non-members)" in text
    assert "#### Breaches" in text and "#### Not checked" in text
    assert "`auc <= 0.6`" in text and "theoretical ε 8.000" in text
    passing = run_gate(mia_measurements(result), [])
    assert formats.to_markdown(result, passing).startswith("### ✅ privaudit mia: pass: no thresholds set")


def test_markdown_escapes_pipes(result):
    gate = run_gate([Measurement("x|y", "auc", 0.9)], [Threshold("fail_above", "auc", 0.5)])
    assert "| x\\|y |" in formats.markdown_gate(gate)


def test_print_gate(gate):
    console = Console(record=True, width=200, file=io.StringIO())
    formats.print_gate(gate, console)
    text = console.export_text()
    assert "failed: loss: auc = " in text and "skipped: " in text and text.rstrip().endswith(gate.summary())
    assert "baseline" in text  # the column appears with a max_increase check

"""``privaudit dp-audit`` end to end through the command line: scores files, the gate, every format, the schema."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from junitparser import Failure, JUnitXml
from typer.testing import CliRunner

from privaudit.canary.dpaudit import read_scores_file
from privaudit.cli.app import app
from privaudit.errors import PrivauditError
from privaudit.stats.auditor import CanaryScoreAuditor

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "fixtures" / "models" / "intent-tiny"
SCHEMA = json.loads((ROOT / "docs" / "schema-dp-audit.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
runner = CliRunner()


def write_scores(path: Path, scores: np.ndarray, inserted: np.ndarray) -> Path:
    lines = [json.dumps({"score": float(s), "inserted": int(b)}) for s, b in zip(scores, inserted)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def separated(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    inserted = rng.random(1000) < 0.5
    return write_scores(tmp_path / "separated.jsonl", rng.normal(size=1000) + 3.0 * inserted, inserted)


@pytest.fixture
def null(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    return write_scores(tmp_path / "null.jsonl", rng.normal(size=1000), rng.random(1000) < 0.5)


def dp_audit(*args: str):
    return runner.invoke(app, ["dp-audit", *args])


def test_separated_canaries_breach_a_small_epsilon(separated):
    result = dp_audit("--scores", str(separated), "--epsilon", "0.5", "--fail-if-bound-exceeds-epsilon")
    assert result.exit_code == 1, result.output
    assert "failed: one-run: fdp_epsilon_lb = 3.835 exceeds the theoretical epsilon 0.5" in result.stdout
    for title in ("f-DP, (ε, δ) family", "f-DP, Gaussian family*", "Steinke et al. 2023"):
        assert title in result.stdout
    assert "assumes the mechanism's trade-off curve is Gaussian" in re.sub(r"\s+", " ", result.stdout)


def test_null_scores_pass_with_bounds_at_zero(null):
    result = dp_audit("--scores", str(null), "--epsilon", "0.5", "--fail-if-bound-exceeds-epsilon", "-f", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    VALIDATOR.validate(document)
    assert [document["bounds"][k]["epsilon"] for k in ("eps_delta", "gaussian", "steinke")] == [0.0, 0.0, 0.0]
    assert document["gate"]["verdict"] == "pass"


def test_json_matches_the_library_and_validates(separated):
    result = dp_audit("--scores", str(separated), "--epsilon", "8", "--delta", "1e-6", "--alpha", "0.1", "-f", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    VALIDATOR.validate(document)
    scores, inserted = read_scores_file(separated)
    expected = CanaryScoreAuditor.from_inclusion(scores, inserted).audit(0.1, 1e-6).to_dict()
    assert document["bounds"] == {k: expected[k] for k in ("eps_delta", "gaussian", "steinke")}
    assert (document["m"], document["alpha"], document["delta"]) == (1000, 0.1, 1e-6)
    assert document["bounds"]["gaussian"]["assumes"] == "gaussian trade-off"
    assert document["bounds"]["eps_delta"]["assumes"] is None
    assert document["source"] == "scores" and document["model"] == {"scores": str(separated)}


def test_same_input_same_output(separated, tmp_path):
    outputs = []
    for name in ("a.json", "b.json"):
        result = dp_audit("--scores", str(separated), "-f", "json", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        outputs.append((tmp_path / name).read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"score": "x", "inserted": 1}', ":2: 'score' must be a finite number, got 'x'"),
        ('{"score": 1.0, "inserted": 2}', ":2: 'inserted' must be 0 or 1"),
        ('{"score": 1.0}', ":2: each line needs 'score' and 'inserted'"),
        ("not json", ":2: not JSON"),
        ('{"score": NaN, "inserted": 0}', ":2: 'score' must be a finite number"),
    ],
)
def test_bad_lines_exit_2_with_one_line_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"score": 0.5, "inserted": 0}\n' + line + "\n", encoding="utf-8")
    result = dp_audit("--scores", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}{message}"), result.stderr


def test_one_sided_or_missing_files_exit_2(tmp_path):
    path = write_scores(tmp_path / "all-in.jsonl", np.arange(5.0), np.ones(5, dtype=bool))
    result = dp_audit("--scores", str(path))
    assert result.exit_code == 2 and "no left-out canary" in result.stderr
    result = dp_audit("--scores", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "nope.jsonl: no such scores file" in result.stderr
    result = dp_audit(str(TINY), "--scores", str(path))
    assert result.exit_code == 2 and "not both" in result.stderr
    result = dp_audit(str(TINY))
    assert result.exit_code == 2 and "MODEL_DIR needs --canaries FILE" in result.stderr
    result = dp_audit("--scores", str(path), "--alpha", "0.7")
    assert result.exit_code == 2


def test_fail_above_and_every_sink(separated, tmp_path):
    sinks = {kind: tmp_path / f"out.{kind}" for kind in ("json", "junit", "sarif", "markdown")}
    args = ["--scores", str(separated), "--fail-above", "gdp_mu_lb=1", "--fail-above", "steinke_epsilon_lb=10"]
    args += [arg for kind, path in sinks.items() for arg in (f"--{kind}-out", str(path))]
    result = dp_audit(*args, "--format", "github")
    assert result.exit_code == 1, result.output
    assert "::error " in result.stdout and "gdp_mu_lb" in result.stdout
    VALIDATOR.validate(json.loads(sinks["json"].read_text()))
    suite = next(iter(JUnitXml.fromfile(str(sinks["junit"]))))
    failed = [case.name for case in suite if any(isinstance(r, Failure) for r in case.result)]
    assert failed == ["gdp_mu_lb <= 1"]
    sarif = json.loads(sinks["sarif"].read_text())
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["gdp-mu-lb-above-threshold"]
    markdown = sinks["markdown"].read_text()
    assert (
        "| f-DP, Gaussian family* |" in markdown and "assumes the mechanism's trade-off curve is Gaussian" in markdown
    )


def test_unknown_metric_fails_before_reading(separated):
    result = dp_audit("--scores", str(separated), "--fail-above", "auc=0.6")
    assert result.exit_code == 2
    assert "valid metrics: fdp_epsilon_lb, gdp_epsilon_lb, gdp_mu_lb, steinke_epsilon_lb" in result.stderr


def test_config_section(separated, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.privaudit.dp-audit]\nscores = "{separated.name}"\nepsilon = 0.5\n'
        "fail_if_bound_exceeds_epsilon = true\nalpha = 0.1\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    result = dp_audit("-f", "json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["alpha"] == 0.1 and document["theoretical_epsilon"] == 0.5
    assert document["gate"]["thresholds"][0]["source"].endswith("tool.privaudit.dp_audit.fail_if_bound_exceeds_epsilon")
    (tmp_path / "pyproject.toml").write_text("[tool.privaudit.dp-audit]\nseed = 3\n", encoding="utf-8")
    result = dp_audit()
    assert result.exit_code == 2 and "unknown key tool.privaudit.dp_audit.seed" in result.stderr


def test_baseline_from_a_dp_audit_result(separated, tmp_path):
    result_file, baseline = tmp_path / "result.json", tmp_path / "baseline.json"
    assert dp_audit("--scores", str(separated), "--json-out", str(result_file)).exit_code == 0
    assert runner.invoke(app, ["baseline", "save", str(result_file), "-o", str(baseline)]).exit_code == 0
    result = dp_audit("--scores", str(separated), "--baseline", str(baseline), "--max-increase", "fdp_epsilon_lb=0.1")
    assert result.exit_code == 0, result.output


def test_input_space_audit_canaries_of_the_fixture_model():
    result = dp_audit(str(TINY), "-c", f"{TINY}.canaries.jsonl", "--epsilon", "0.5", "-f", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    VALIDATOR.validate(document)
    assert document["source"] == "audit-canaries" and document["m"] == 200
    # Measured on intent-tiny (no DP): f-DP (eps, delta) 1.139, Gaussian 1.709, Steinke 1.135.
    assert document["bounds"]["eps_delta"]["epsilon"] == pytest.approx(1.1389, abs=1e-3)
    assert document["bounds"]["gaussian"]["epsilon"] > document["bounds"]["eps_delta"]["epsilon"]


def test_gradient_canary_file_goes_to_the_training_helper(tmp_path, monkeypatch):
    calls = []

    def gradient_canary_scores(canaries_file: Path):
        calls.append(canaries_file)
        return np.array([3.0, 2.0, 1.0, 0.0] * 50), np.array([1, 1, 0, 0] * 50)

    module = types.ModuleType("privaudit.training.gradient_canaries")
    module.gradient_canary_scores = gradient_canary_scores
    monkeypatch.setitem(sys.modules, "privaudit.training.gradient_canaries", module)
    file = tmp_path / "gradient.jsonl"
    file.write_text('{"id": 0, "inserted": 1}\n', encoding="utf-8")
    result = dp_audit(str(TINY), "-c", str(file), "-f", "json")
    assert result.exit_code == 0, result.output
    assert calls == [file]
    document = json.loads(result.stdout)
    VALIDATOR.validate(document)
    assert document["source"] == "gradient-canaries" and document["m"] == 200
    assert document["bounds"]["steinke"]["correct"] == document["bounds"]["steinke"]["guesses"] == 100


def test_gradient_canary_file_without_the_helper_exits_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "privaudit.training.gradient_canaries", None)
    file = tmp_path / "gradient.jsonl"
    file.write_text('{"id": 0, "inserted": 1}\n', encoding="utf-8")
    result = dp_audit(str(TINY), "-c", str(file))
    assert result.exit_code == 2 and "cannot read gradient canaries" in result.stderr


def test_read_scores_file_accepts_booleans_and_blank_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"score": 1, "inserted": true}\n\n{"score": -0.5, "inserted": false}\n', encoding="utf-8")
    scores, inserted = read_scores_file(path)
    assert scores.tolist() == [1.0, -0.5] and inserted.tolist() == [True, False]
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(PrivauditError, match="no canaries"):
        read_scores_file(path)


def test_help_has_panels_and_an_unbroken_example():
    result = runner.invoke(app, ["dp-audit", "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    # The first example is one whole command on one line, copyable as it stands.
    example = re.compile(r"^ +privaudit dp-audit --scores canary-scores\.jsonl --epsilon 8 *$", re.MULTILINE)
    assert example.search(result.output), result.output
    for panel in ("Data", "Analysis", "Gate", "Output"):
        assert f"─ {panel} ─" in result.output, panel
    prose = result.output.split("╭")[0]
    for line in prose.splitlines():
        assert len(line) <= 80, line


def test_schema_shares_the_gate_with_mia():
    mia = json.loads((ROOT / "docs" / "schema-mia.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for name in ("threshold", "check", "gate", "nullable_number"):
        assert SCHEMA["$defs"][name] == mia["$defs"][name], name


def test_schema_rejects_a_drifted_document(separated):
    document = json.loads(dp_audit("--scores", str(separated), "-f", "json").stdout)
    document["bounds"]["gaussian"]["assumes"] = "nothing"
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(document)


def test_two_sided_doubles_the_rules(separated):
    one = json.loads(dp_audit("--scores", str(separated), "-f", "json").stdout)
    result = dp_audit("--scores", str(separated), "--two-sided", "-f", "json")
    assert result.exit_code == 0, result.output
    two = json.loads(result.stdout)
    VALIDATOR.validate(two)
    assert (one["one_sided"], two["one_sided"]) == (True, False)
    assert two["n_hypotheses"] == 2 * one["n_hypotheses"]
    assert two["alpha_per_test"] == pytest.approx(one["alpha_per_test"] / 2)


def test_a_claim_above_the_reach_is_said_to_be_uncheckable(tmp_path):
    rng = np.random.default_rng(2)
    inserted = np.arange(100) % 2 == 0
    scores = write_scores(tmp_path / "few.jsonl", rng.normal(size=100) + 10.0 * inserted, inserted)
    above = dp_audit("--scores", str(scores), "--epsilon", "8", "--fail-if-bound-exceeds-epsilon")
    assert above.exit_code == 0, above.output  # perfectly separated, yet the strict gate cannot fail a claim of 8
    text = re.sub(r"\s+", " ", above.stdout)
    assert "with 100 canaries this audit can show at most ε 2.461, below the claimed ε 8.000" in text
    below = dp_audit("--scores", str(scores), "--epsilon", "1", "-f", "json")
    assert json.loads(below.stdout)["reach"] == pytest.approx(2.4612, abs=1e-3)
    markdown = dp_audit("--scores", str(scores), "--epsilon", "8", "-f", "markdown")
    assert "can show at most ε 2.461" in markdown.stdout

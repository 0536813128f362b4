"""``dp-audit --fail-if-estimate-exceeds-epsilon``: an opt-in gate on the likelihood estimate's lower limit (an
estimate, not a bound). Honest simulated mechanisms do not trip it; a separated no-noise case, which few canaries
cannot prove past the claim with the strict bound, does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from privaudit.cli.app import app
from privaudit.stats.accounting import epsilon, noise_multiplier_for_epsilon
from privaudit.training.gradient_canaries import likelihood_ratio_scores

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "docs" / "schema-dp-audit.json").read_text(encoding="utf-8"))
)
DELTA = 1e-5
runner = CliRunner()


def dp_audit(*args: object):
    return runner.invoke(app, ["dp-audit", *map(str, args)], env={"COLUMNS": "200"})


def write_scores(path: Path, scores: np.ndarray, inserted: np.ndarray) -> Path:
    path.write_text(
        "".join(json.dumps({"score": float(s), "inserted": int(b)}) + "\n" for s, b in zip(scores, inserted))
    )
    return path


def honest_dpsgd(tmp_path: Path, seed: int) -> tuple[Path, float]:
    """5,000 Dirac canaries of an honest DP-SGD run at the fixture recipe (q 0.2, 150 steps, epsilon 8 by the RDP
    accountant), scored by their likelihood ratio as privaudit scores gradient canaries; and the accountant's eps."""
    q, steps = 0.2, 150
    sigma = noise_multiplier_for_epsilon(target_epsilon=8.0, delta=DELTA, sample_rate=q, steps=steps)
    rng = np.random.default_rng(seed)
    inserted = rng.integers(0, 2, 5000).astype(bool)
    records = (rng.random((steps, 5000)) < q) * inserted + sigma * rng.normal(size=(steps, 5000))
    scores = likelihood_ratio_scores(records, sample_rate=q, noise_multiplier=sigma)
    claim = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA)
    return write_scores(tmp_path / f"honest{seed}.jsonl", scores, inserted), claim


def separated_no_noise(tmp_path: Path) -> Path:
    """100 data canaries of a pipeline without noise: the inserted ones move, the others do not (57 in, 43 out)."""
    rng = np.random.default_rng(0)
    inserted = np.zeros(100, dtype=bool)
    inserted[rng.permutation(100)[:57]] = True
    scores = rng.normal(size=100) + 6.0 * inserted
    return write_scores(tmp_path / "no-noise.jsonl", scores, inserted)


@pytest.mark.parametrize("seed", range(5))
def test_honest_dpsgd_does_not_trip_it(tmp_path, seed):
    path, claim = honest_dpsgd(tmp_path, seed)
    result = dp_audit("--scores", path, "--epsilon", claim, "--fail-if-estimate-exceeds-epsilon", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    VALIDATOR.validate(report)
    (check,) = report["gate"]["checks"]
    assert check["metric"] == "estimate_epsilon_lower" and check["status"] == "passed"
    # Not a vacuous pass: the estimate is well above the strict bound, yet its lower limit stays under the claim.
    assert report["bounds"]["eps_delta"]["epsilon"] < 5.0 < report["estimate"]["epsilon_lower"] <= claim


def test_honest_gaussian_mechanism_does_not_trip_it(tmp_path):
    # 1-GDP scores (eps 4.38 at delta 1e-5) audited against a claim of that eps: an honest mechanism at its claim.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        inserted = rng.integers(0, 2, 2000).astype(bool)
        path = write_scores(tmp_path / f"g{seed}.jsonl", rng.normal(size=2000) + inserted, inserted)
        result = dp_audit("--scores", path, "--epsilon", 4.377, "--fail-if-estimate-exceeds-epsilon")
        assert result.exit_code == 0, result.output


def test_a_separated_no_noise_case_trips_it_where_the_strict_bound_cannot(tmp_path):
    path = separated_no_noise(tmp_path)
    strict = dp_audit("--scores", path, "--epsilon", 8, "--fail-if-bound-exceeds-epsilon", "--format", "json")
    assert strict.exit_code == 0, strict.output  # 100 canaries cannot prove more than about 2.6
    assert json.loads(strict.stdout)["bounds"]["eps_delta"]["epsilon"] < 3.0
    result = dp_audit(
        "--scores", path, "--epsilon", 8, "--fail-if-bound-exceeds-epsilon", "--fail-if-estimate-exceeds-epsilon",
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    VALIDATOR.validate(report)
    by_metric = {c["metric"]: c for c in report["gate"]["checks"]}
    assert by_metric["fdp_epsilon_lb"]["status"] == "passed"
    estimate = by_metric["estimate_epsilon_lower"]
    assert estimate["status"] == "failed" and estimate["source"] == "--fail-if-estimate-exceeds-epsilon"
    assert estimate["value"] == pytest.approx(report["estimate"]["epsilon_lower"]) and estimate["value"] > 8
    assert "an estimate, not a bound" in estimate["message"]


def test_off_by_default_and_named_in_help(tmp_path):
    path = separated_no_noise(tmp_path)
    result = dp_audit("--scores", path, "--epsilon", 8, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["gate"]["checks"] == []
    help_text = re.sub(r"\s+", " ", dp_audit("--help").stdout)
    assert "--fail-if-estimate-exceeds-epsilon" in help_text and "not a bound" in help_text


def test_config_key_and_its_off_switch(tmp_path, monkeypatch):
    path = separated_no_noise(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.privaudit.dp-audit]\nscores = "{path.name}"\nepsilon = 8\nfail_if_estimate_exceeds_epsilon = true\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    result = dp_audit("-f", "json")
    assert result.exit_code == 1, result.output
    (threshold,) = json.loads(result.stdout)["gate"]["thresholds"]
    assert threshold["metric"] == "estimate_epsilon_lower"
    assert threshold["source"].endswith("tool.privaudit.dp_audit.fail_if_estimate_exceeds_epsilon")
    assert dp_audit("--no-fail-if-estimate-exceeds-epsilon").exit_code == 0


def test_sarif_says_it_is_not_proved(tmp_path):
    path = separated_no_noise(tmp_path)
    result = dp_audit("--scores", path, "--epsilon", 8, "--fail-if-estimate-exceeds-epsilon", "--format", "sarif")
    assert result.exit_code == 1
    rule = json.loads(result.stdout)["runs"][0]["tool"]["driver"]["rules"][0]
    assert "not a bound" in rule["shortDescription"]["text"] and "not proved" in rule["shortDescription"]["text"]


def test_an_infinite_estimate_fails_and_still_writes_valid_json(tmp_path):
    # Every score equal on each side, the sides apart: the fit's lower limit is infinite (JSON: null in "estimate").
    path = write_scores(tmp_path / "perfect.jsonl", np.array([0.0, 1.0] * 10), np.array([0, 1] * 10))
    result = dp_audit("--scores", path, "--epsilon", 8, "--fail-if-estimate-exceeds-epsilon", "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    VALIDATOR.validate(report)
    assert report["estimate"]["epsilon_lower"] is None and report["gate"]["checks"][0]["status"] == "failed"

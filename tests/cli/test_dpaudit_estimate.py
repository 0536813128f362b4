"""``privaudit dp-audit``'s likelihood estimate (an estimate, not a bound) in every output, its warning, and gradient
canaries audited from their record alone (no model directory), as the Opacus hook writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
from typer.testing import CliRunner

from privaudit.cli.app import app
from privaudit.stats.gaussian_fit import gaussian_fit_estimate

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "docs" / "schema-dp-audit.json").read_text(encoding="utf-8"))
)
FIXTURE_CANARIES = ROOT / "fixtures" / "models" / "intent-tiny-dp.canaries.jsonl"
runner = CliRunner()


def dp_audit(*args: object):
    return runner.invoke(app, ["dp-audit", *map(str, args)], env={"COLUMNS": "200"})


def gaussian_scores(tmp_path: Path, mu: float, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inserted = rng.random(2000) < 0.5
    scores = rng.normal(size=2000) + mu * inserted
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps({"score": s, "inserted": int(b)}) + "\n" for s, b in zip(scores, inserted)))
    return path, scores, inserted


def test_the_estimate_is_in_the_json_and_never_gated(tmp_path):
    path, scores, inserted = gaussian_scores(tmp_path, 1.0)
    # Claimed epsilon 3: below the estimate's lower limit (mu 1 is 4.38 at 1e-5), above every rigorous bound.
    result = dp_audit("--scores", path, "--epsilon", 3, "--fail-if-bound-exceeds-epsilon", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    VALIDATOR.validate(report)
    expected = gaussian_fit_estimate(scores, inserted, delta=1e-5, alpha=0.05).to_dict()
    assert report["estimate"] == expected and report["estimate"]["label"] == "estimate, not a bound"
    assert report["estimate"]["epsilon_lower"] > 3 > report["bounds"]["eps_delta"]["epsilon"]
    assert [c["metric"] for c in report["gate"]["checks"]] == ["fdp_epsilon_lb"]


def test_the_table_labels_it_and_warns_when_the_claim_is_far_below(tmp_path):
    path, _, _ = gaussian_scores(tmp_path, 1.0)
    text = re.sub(r"\s+", " ", dp_audit("--scores", path, "--epsilon", 3).stdout)
    assert "likelihood estimate (estimate, not a bound)" in text
    assert "warning: the claimed ε 3.000 is below the likelihood estimate's lower limit" in text
    text = re.sub(r"\s+", " ", dp_audit("--scores", path, "--epsilon", 8).stdout)
    assert "likelihood estimate" in text and "warning: the claimed" not in text


def test_the_markdown_summary_has_it(tmp_path):
    path, _, _ = gaussian_scores(tmp_path, 1.0)
    out = tmp_path / "summary.md"
    assert dp_audit("--scores", path, "--epsilon", 3, "--markdown-out", out).exit_code == 0
    summary = out.read_text(encoding="utf-8")
    assert "likelihood estimate (estimate, not a bound)" in summary and "warning: the claimed ε 3.000" in summary


def test_perfect_separation_writes_null_not_infinity(tmp_path):
    path = tmp_path / "perfect.jsonl"
    path.write_text("".join(json.dumps({"score": float(b), "inserted": b}) + "\n" for b in [0, 1] * 10))
    result = dp_audit("--scores", path, "--format", "json")
    report = json.loads(result.stdout)
    VALIDATOR.validate(report)
    assert report["estimate"]["mu_lower"] is None and report["estimate"]["epsilon"] is None


def gradient_record(path: Path) -> Path:
    """A gradient-canary file and its record as privaudit writes them: 200 canaries, 30 noisy steps at q 0.5."""
    import torch

    from privaudit.training.canary_insertion import GradientCanaries

    weight = torch.nn.Parameter(torch.zeros(50, 8))
    canaries = GradientCanaries(parameter=weight, name="embed", rows=np.arange(50), m=200, reserved=0, seed=0)
    canaries.configure(sample_rate=0.5, max_grad_norm=1.0, noise_multiplier=1.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        grad = torch.zeros(50, 8)
        canaries.insert(grad)
        grad += torch.normal(0.0, 1.0, size=grad.shape, generator=generator)
        canaries.observe(grad)
    path.write_text("".join(line + "\n" for line in canaries.save(path)), encoding="utf-8")
    return path


def test_gradient_canaries_need_no_model_directory(tmp_path):
    canaries = gradient_record(tmp_path / "run.canaries.jsonl")
    result = dp_audit("--canaries", canaries, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    VALIDATOR.validate(report)
    assert report["model"]["path"] is None and report["source"] == "gradient-canaries"


def test_input_space_canaries_without_a_model_and_nothing_at_all_exit_2():
    result = dp_audit("--canaries", FIXTURE_CANARIES, "--canary-kind", "audit")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "input-space audit canaries are scored on a model: give MODEL_DIR" in result.stderr
    result = dp_audit()
    assert result.exit_code == 2 and "give --scores FILE, --canaries FILE" in result.stderr

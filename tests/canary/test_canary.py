"""privaudit/canary/run.py end to end on the bundled fixtures: exposure, the one-run audit, bad canary files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from privaudit.canary.canaries import read_canaries
from privaudit.canary.run import CanaryRequest, candidates, run_canary
from privaudit.cli.app import app
from privaudit.errors import PrivauditError

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "fixtures" / "models"
TINY, TINY_DP = MODELS / "intent-tiny", MODELS / "intent-tiny-dp"


def _run(model: Path, **kw):
    return run_canary(CanaryRequest(model_dir=model, canaries=Path(f"{model}.canaries.jsonl"), extract=False, **kw))


@pytest.fixture(scope="module")
def tiny():
    return _run(TINY, one_run=True)


def test_inserted_canaries_are_exposed_far_more_than_controls(tiny):
    inserted, controls = tiny.mean_exposure(True), tiny.mean_exposure(False)
    # Measured: inserted 7.6 bits, controls 1.0 (a random secret has log2(e) = 1.44 bits on average).
    assert inserted > controls + 3.0
    assert controls < 3.0
    assert len(tiny.group(True)) == 10 and all(r.canary.repeats == 10 for r in tiny.group(True))


def test_exposure_matches_rank_among_all_candidates(tiny):
    row = tiny.group(True)[0]
    losses = tiny.candidate_losses[f"{row.canary.template} -> {row.canary.label}"]
    assert len(losses) == 10_000
    # Independent count: exposure = log2 |R| - log2 rank, R the other 9,999 candidates, rank = 1 + #{R <= secret}.
    rank = 1 + int(np.sum(losses <= row.loss)) - 1
    assert row.exposure == pytest.approx(np.log2(9_999) - np.log2(rank))
    # The rank is surfaced as it is counted, and in the JSON report.
    assert (row.exposure_rank, row.exposure_rank_of) == (rank, 10_000)
    assert tiny.to_dict()["canaries"][0]["exposure_rank"] == rank


def test_canary_table_and_html_show_the_loss_rank(tiny):
    from rich.console import Console

    from privaudit.report.canary_html import render_canary_html
    from privaudit.report.canary_table import canary_table

    row = tiny.group(True)[0]
    console = Console(record=True, width=200)
    console.print(canary_table(tiny))
    assert f"{row.exposure_rank} / 10000" in console.export_text()
    assert f"{row.exposure_rank} / 10000" in render_canary_html(tiny)


def test_dp_exposure_falls_toward_controls_and_one_run_bound_stays_below_epsilon(tiny):
    dp = _run(TINY_DP, one_run=True)
    assert dp.mean_exposure(True) < tiny.mean_exposure(True) - 3.0
    assert abs(dp.mean_exposure(True) - dp.mean_exposure(False)) < 2.0
    assert dp.theoretical_epsilon is not None
    assert dp.one_run.epsilon_lower_bound < dp.theoretical_epsilon
    assert tiny.one_run.epsilon_lower_bound > dp.one_run.epsilon_lower_bound
    # The f-DP bounds beside Steinke's: the strict one stays below the claim too, and without DP it is larger.
    assert dp.one_run_bounds.eps_delta.epsilon < dp.theoretical_epsilon
    assert tiny.one_run_bounds.eps_delta.epsilon > dp.one_run_bounds.eps_delta.epsilon


def test_one_run_bounds_are_those_of_dp_audit(tiny):
    # canary --one-run and dp-audit MODEL -c FILE analyse the same scores (the audit canaries' negative losses).
    from privaudit.canary.dpaudit import DpAuditRequest, run_dp_audit

    audit = run_dp_audit(DpAuditRequest(model_dir=TINY, canaries=Path(f"{TINY}.canaries.jsonl")))
    assert tiny.one_run_bounds == audit.bounds
    # Measured on intent-tiny: f-DP (eps, delta) 1.139 >= Steinke on the frontier 1.135.
    assert audit.bounds.eps_delta.epsilon == pytest.approx(1.1389, abs=1e-3)
    assert audit.bounds.steinke.epsilon == pytest.approx(1.1348, abs=1e-3)


def test_same_seed_same_json(tmp_path):
    runner = CliRunner()
    docs = []
    for name in ("a.json", "b.json"):
        out = tmp_path / name
        args = ["canary", str(TINY), "-c", f"{TINY}.canaries.jsonl", "--no-extract", "--one-run"]
        result = runner.invoke(app, [*args, "--format", "json", "-o", str(out), "--seed", "5"])
        assert result.exit_code == 0, result.output
        docs.append(out.read_text())
    assert docs[0] == docs[1]
    doc = json.loads(docs[0])
    assert doc["schema"] == "privaudit.canary/1"
    assert doc["summary"]["n_inserted"] == 10 and doc["summary"]["n_controls"] == 10
    assert doc["one_run"]["m"] == 200
    assert doc["one_run_bounds"]["m"] == 200 and doc["one_run_bounds"]["gaussian"]["assumes"] == "gaussian trade-off"
    schema = json.loads((ROOT / "docs" / "schema-canary.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_candidates_enumerate_the_whole_space_in_order():
    canary = read_canaries(f"{TINY}.canaries.jsonl")[0]
    texts, space = candidates(canary)
    assert space == 10_000 and len(set(texts)) == 10_000
    assert texts[0].endswith("0 0 0 0") and texts[-1].endswith("9 9 9 9")
    assert canary.text in texts


def _write(path: Path, **record) -> Path:
    base = {"template": "my pin code is {d} {d} {d} {d}", "secret": ["1", "2", "3", "4"], "label": "play_music"}
    path.write_text(json.dumps({**base, **record}) + "\n")
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"template": "my pin code is secret", "secret": []}, "no slot"),
        ({"secret": ["1", "2", "3"]}, "does not fit"),
        ({"secret": ["1", "2", "3", "x"]}, "not in its slot's alphabet"),
        ({"label": "no_such_intent"}, "is not a label"),
        ({"template": "code {d} {d} {d} {d} {d} {d} {d}", "secret": list("1234567")}, "--sample"),
    ],
)
def test_bad_canary_files_are_clear_errors(tmp_path, record, message):
    path = _write(tmp_path / "c.jsonl", **record)
    with pytest.raises(PrivauditError, match=message):
        run_canary(CanaryRequest(model_dir=TINY, canaries=path, extract=False))


def test_large_space_is_sampled_and_extrapolated(tmp_path):
    path = _write(tmp_path / "c.jsonl", template="code {d} {d} {d} {d} {d} {d} {d}", secret=list("1234567"))
    result = run_canary(CanaryRequest(model_dir=TINY, canaries=path, extract=False, sample=2000))
    assert result.exposure_method == "extrapolation"
    assert 0.0 <= result.rows[0].exposure <= np.log2(1e7) + 1e-9


def test_cli_bad_canary_file_exits_2_with_one_line(tmp_path):
    path = _write(tmp_path / "c.jsonl", secret=["1", "2"])
    result = CliRunner().invoke(app, ["canary", str(TINY), "-c", str(path), "--no-extract"])
    assert result.exit_code == 2
    assert "does not fit" in result.output and "Traceback" not in result.output

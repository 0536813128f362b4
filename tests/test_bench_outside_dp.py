"""benchmarks/outside_dp.py's section text: every note is read from the rows, not written down.

The run itself (nine trainings of the fixture recipe, minutes each) is ``make bench``'s; here its renderer gets rows
built by hand, and the notes must follow them when they change.
"""

from __future__ import annotations

import copy
import importlib

import pytest

outside_dp = importlib.import_module("benchmarks.outside_dp")


def audit(strict: float, lower: float, *, bound: int = 0, estimate: int = 0) -> dict:
    return {
        "eps_delta": strict, "gaussian": strict, "steinke": strict, "estimate": lower + 1, "estimate_lower": lower,
        "exit_bound": bound, "exit_estimate": estimate,
    }  # fmt: skip


def row(pipeline: str, variant: str, seed: int, *, planted=True, hook=True, data=None, hook_audit=None, **extra):
    r = {
        "pipeline": pipeline, "variant": variant, "seed": seed, "planted": planted, "hook": hook,
        "claimed_epsilon": 8.0, "train_seconds": 100.0, "test_accuracy": 0.5, **extra,
    }  # fmt: skip
    if planted:
        r["data_white"] = r["data_black"] = data or audit(0.0, 0.0)
    if hook:
        r["hook_audit"] = hook_audit or audit(2.9, 6.4)
    return r


@pytest.fixture
def document() -> dict:
    return {
        "what": "the fixture recipe",
        "recipe": {
            "sample_rate": 0.2,
            "steps": 150,
            "max_length": 32,
            "lr": 0.01,
            "noise_multiplier": 1.785,
            "target_epsilon": 8.0,
            "delta": 1e-5,
            "base": "BERT",
        },  # fmt: skip
        "plant": {"rows": 1000, "canaries": 100, "rows_added": 57, "seconds": 0.5},
        "hook_canaries": 100_000,
        "targets": {"data": 1.0, "hook": 2.5},
        "threads": 1,
        "partial": False,
        "rows": [
            row("honest", "honest", 0),
            row(
                "noise multiplier 0", "noise0", 0, data=audit(2.6, 11.0, estimate=1), hook_audit=audit(9.4, 30, bound=1)
            ),
            row("shuffled", "shuffled", 0),
            row("honest, planted, no hook", "honest", 0, hook=False, train_seconds=50.0),
            row("honest, no canaries", "honest", 0, planted=False, hook=False, test_accuracy=0.6),
        ],
    }


def text(document: dict) -> str:
    return "\n".join(outside_dp.markdown(document))


def test_the_notes_follow_the_rows(document):
    out = text(document)
    assert "data canaries (white-box): strict bound 0.00, every one at or below the claim; misses" in out
    assert "the Opacus hook: strict bound 2.90, every one at or below the claim; meets" in out
    assert "noise multiplier 0: data white-box caught by the estimate gate" in out
    assert "hook caught by the bound gate." in out
    assert "flagged by the estimate gate alone: noise multiplier 0" in out
    assert "50 s without the hook, 100 s with 100,000 gradient canaries (2.00x)" in out
    assert "0.600 without canaries, 0.500 with the data canaries planted" in out
    assert "Partial run" not in out
    changed = copy.deepcopy(document)
    changed["rows"][0]["hook_audit"] = audit(9.0, 9.5, bound=1, estimate=1)
    changed["rows"][0]["data_white"] = audit(1.2, 0.5)
    changed["partial"] = True
    out = text(changed)
    assert "the Opacus hook: strict bound 9.00, NOT every one at or below the claim" in out
    assert "data canaries (white-box): strict bound 1.20, every one at or below the claim; meets" in out
    assert out.startswith("**Partial run**")


def test_no_rows_says_so(document):
    document["rows"] = []
    assert text(document) == "No row finished."


def test_the_ideal_canary_note_and_the_minilm_row_are_read_from_the_document(document):
    document["ideal"] = {
        "noise_multiplier": 1.785,
        "trials": 200,
        "counts": {"100": {"median": 0.81, "p_target": 0.3, "reach": 2.46}, "1000": {"median": 1.9, "p_target": 1.0, "reach": 4.8}},
    }  # fmt: skip
    document["rows"].append(
        row("honest, MiniLM (supplementary)", "honest", 0, supplementary=True, lr=1e-3, data=audit(0.3, 0.1))
    )
    out = text(document)
    assert "100 canaries: median strict bound 0.81, at or above 1 in 30% of runs (reach 2.46)" in out
    assert "even a perfect canary meets issue 18's data-canary target only in 30% of runs" in out
    assert (
        "MiniLM, honest (supplementary, Adam 0.001, physical batches of 50): data canaries white-box strict 0.30" in out
    )
    assert "was not run in this section" not in out
    assert "Honest, 1 seed, data canaries (white-box): strict bound 0.00" in out  # the supplementary row stays apart


def test_ideal_canaries_stay_within_their_reach():
    ideal = outside_dp.ideal_canaries(counts=(100,), trials=20)
    count = ideal["counts"]["100"]
    assert 0.0 <= count["median"] <= count["reach"] < 2.5
    assert ideal["noise_multiplier"] == pytest.approx(1.785, abs=1e-3)  # epsilon 8 at the recipe, Opacus RDP


def test_a_supplementary_row_does_not_stand_in_for_the_section_s_own(document):
    document["rows"].append(
        row("honest, MiniLM (supplementary)", "honest", 0, supplementary=True, lr=1e-3, train_seconds=3000.0)
    )
    out = text(document)
    assert "50 s without the hook, 100 s with 100,000 gradient canaries (2.00x)" in out

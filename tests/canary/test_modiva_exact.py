"""ModIvA exact where exact is cheap (privaudit.canary.modiva, ``exact_budget``), end to end on intent-tiny.

The fixture's inserted secrets rank 3 to 496 by their label's loss, none first, so the tests plant canaries of their
own beside them: for three labels, the secret that exposure's enumeration ranks first. A canary's secret is used only
to score an attack, never to find it, so such a canary is a fair target: within the budget the guess must be that
secret whatever the search does. The search runs with a handful of steps, so that it misses most of them and its own
result, reported beside, differs from the guess.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from rich.console import Console

from privaudit.canary import exposure as exposure_module
from privaudit.canary.canaries import Canary, fill, read_canaries, write_canaries
from privaudit.canary.exposure import candidates
from privaudit.canary.run import CanaryRequest, run_canary
from privaudit.report.canary_html import render_canary_html
from privaudit.report.canary_table import canary_table, print_canary
from privaudit.stats.logits import log_softmax
from privaudit.target import Target

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "fixtures" / "models" / "intent-tiny"
SCHEMA = json.loads((ROOT / "docs" / "schema-canary.json").read_text(encoding="utf-8"))
WEAK_SEARCH = ("modiva:steps=5", "modiva:restarts=2", "modiva:rescore=1")
LABELS = ("get_weather", "play_music", "set_alarm")


@pytest.fixture(scope="module")
def canary_file(tmp_path_factory) -> Path:
    """Four of the fixture's canaries, and per label of LABELS a canary whose secret is the label's loss rank 1."""
    fixture = [c for c in read_canaries(f"{TINY}.canaries.jsonl") if c.kind == "exposure"][:4]
    template, alphabets = fixture[0].template, fixture[0].alphabets
    texts, _ = candidates(fixture[0])
    target = Target.load(TINY)
    logp = log_softmax(target.logits(texts, batch_size=512))
    planted = []
    for label in LABELS:
        column = -logp[:, target.label2id[label]]
        best = int(np.argmin(column))
        assert np.sum(column <= column[best]) == 1  # a strict rank 1, so exposure ranks it 1
        secret = tuple(texts[best].split()[-4:])
        planted.append(Canary(template, alphabets, secret, label, repeats=10, inserted=True))
    path = tmp_path_factory.mktemp("exact") / "canaries.jsonl"
    write_canaries(path, [*fixture, *planted])
    return path


def _run(canary_file: Path, *options: str, **kw):
    return run_canary(
        CanaryRequest(model_dir=TINY, canaries=canary_file, attack_options=(*WEAK_SEARCH, *options), **kw)
    )


@pytest.fixture(scope="module")
def exact(canary_file):
    return _run(canary_file)


def test_within_the_budget_the_guess_is_exposures_rank_one(exact):
    rank_one = [row for row in exact.rows if row.exposure_rank == 1]
    assert len(rank_one) >= len(LABELS)
    for row in rank_one:
        assert row.extraction.guess == row.canary.secret and row.extraction.recovered
    for row in exact.rows:
        # The guess is the candidate of lowest loss in exposure's own enumeration, rank 1 or not.
        x, texts = row.extraction, candidates(row.canary)[0]
        losses = exact.candidate_losses[f"{row.canary.template} -> {row.canary.label}"]
        assert fill(row.canary.template, x.guess) == texts[int(np.argmin(losses))]
        assert x.guess_method == "exhaustive" and x.exact_budget == 100_000
        assert x.recovered == (x.guess == row.canary.secret)


def test_the_search_is_still_reported_beside_the_guess(exact):
    rows = [row.extraction for row in exact.rows]
    # A 5-step, 2-restart search misses rank-1 secrets that the enumeration finds: reported, not hidden.
    assert any(x.search_guess != x.guess for x in rows)
    for x in rows:
        assert x.search_recovered == (x.search_guess == x.secret)
    summary = exact.to_dict()["summary"]
    assert summary["extracted_inserted"] == sum(x.recovered for x in rows if x.inserted) >= len(LABELS)
    assert summary["search_extracted_inserted"] == sum(x.search_recovered for x in rows if x.inserted)
    assert summary["search_extracted_inserted"] < summary["extracted_inserted"]
    document = exact.to_dict()
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    first = document["canaries"][0]["extraction"]
    assert first["guess_method"] == "exhaustive" and "search_guess" in first and "seconds" not in first


def test_table_and_html_show_the_search_beside_the_guess(exact):
    console = Console(record=True, width=250)
    console.print(canary_table(exact))
    print_canary(exact, console)
    text = console.export_text()
    found = next(x for x in (r.extraction for r in exact.rows) if x.search_guess != x.guess)
    assert "search" in text and " ".join(found.search_guess) in text
    assert "lowest-loss secret of the whole space (exhaustive: at most 100,000 secrets)" in text
    assert f"its search alone {exact.search_extracted(True)} (controls: " in text
    html = render_canary_html(exact)
    assert "search&#x27;s own guess" in html or "search's own guess" in html
    assert f"its search alone {exact.search_extracted(True)}" in html


def test_over_the_budget_the_search_alone_is_used_and_the_report_says_so(canary_file):
    result = _run(canary_file, "modiva:exact_budget=9999")
    for row in result.rows:
        x = row.extraction
        assert x.guess_method == "search" and x.exact_budget == 9999
        assert (x.guess, x.recovered) == (x.search_guess, x.search_recovered)
    console = Console(record=True, width=250)
    print_canary(result, console)
    assert "the search's (space over the exact budget of 9,999 secrets)" in console.export_text()
    jsonschema.Draft202012Validator(SCHEMA).validate(result.to_dict())


def test_a_space_is_scored_once_per_audit_and_the_json_is_the_same_bytes(canary_file, monkeypatch):
    calls = []
    original = exposure_module.candidate_log_probs

    def counted(*args, **kwargs):
        calls.append(kwargs.get("sample"))
        return original(*args, **kwargs)

    monkeypatch.setattr(exposure_module, "candidate_log_probs", counted)
    first = _run(canary_file, seed=3)
    assert calls == [None]  # one template: exposure and ModIvA's exhaustive guess share one enumeration
    again = _run(canary_file, seed=3)
    assert json.dumps(first.to_dict()) == json.dumps(again.to_dict())
    calls.clear()
    _run(canary_file, exposure=False)
    assert calls == [None]  # ModIvA alone enumerates the space itself, once

"""Tables that fit: at 80 columns no name, label or header of the mia, canary and dp-audit tables is cut or wrapped.

A terminal too narrow for a table gets the same cells stacked, one block per row; a wide one gets the table.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from privaudit.canary.canaries import Canary
from privaudit.canary.run import CanaryResult, CanaryRow
from privaudit.mia.run import AttackResult, MiaResult
from privaudit.report.canary_table import print_canary
from privaudit.report.dpaudit_table import bounds_view
from privaudit.report.table import print_mia
from privaudit.stats.auditor import CanaryScoreAuditor
from privaudit.stats.metrics import evaluate

# make demo's ten attacks: at 80 columns the table folded "modified-entr / opy" and "reference-los / s".
ATTACKS = (
    "loss", "gap", "modified-entropy", "reference-loss", "lira-offline", "lira-online", "rmia", "min-k-prob",
    "label-only-augment", "entropy",
)  # fmt: skip
# The fixture's intents: at 80 columns the canary table cut them to "order_…", "add_to…", and its headers to "insert…".
LABELS = ("order_pizza", "add_to_playlist", "set_thermostat", "transfer_money", "get_directions", "turn_off_lights")
CANARY_HEADERS = ("inserted", "exposure", "loss rank", "ModIvA guess", "slots", "ModIvA rank")


def _text(print_function, result, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    print_function(result, console)
    return console.export_text()


def _mia(names=ATTACKS) -> MiaResult:
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    attacks = []
    for i, name in enumerate(names):
        scores = np.random.default_rng(i).normal(0.0, 1.0, is_member.size) + 0.2 * i * is_member
        metrics = evaluate(scores, is_member, delta=1e-5, n_bootstrap=50, seed=i)
        attacks.append(AttackResult(name, "", {}, metrics, scores))
    return MiaResult(
        model={"path": "fixtures/models/intent-tiny"},
        seed=0,
        theoretical_epsilon=None,
        delta=1e-5,
        n_members=200,
        n_non_members=200,
        n_reference_models=4,
        attacks=attacks,
        is_member=is_member,
    )


def _canaries() -> CanaryResult:
    rows = []
    for i, label in enumerate(LABELS * 2):
        inserted = i < len(LABELS)
        secret = tuple(str(d) for d in np.random.default_rng(i).integers(0, 10, 4))
        canary = Canary(
            template="my pin is {0} {1} {2} {3}",
            alphabets=(tuple("0123456789"),) * 4,
            secret=secret,
            label=label,
            repeats=10 if inserted else 0,
            inserted=inserted,
        )
        guess = secret if i == 0 else tuple(reversed(secret))
        extraction = SimpleNamespace(
            guess=guess, recovered=i == 0, slot_accuracy=0.5, rank=4 + 100 * i, space_size=10_000,
            random_baseline=1e-4, exact_budget=100_000, guess_method="exhaustive", search_guess=guess,
            search_recovered=i == 0,
        )  # fmt: skip
        rows.append(
            CanaryRow(canary, loss=0.1 * i, exposure=8.0 - i * 0.6, extraction=extraction, exposure_rank=1 + 40 * i,
                      exposure_rank_of=10_000)
        )  # fmt: skip
    return CanaryResult(
        model={"path": "fixtures/models/intent-tiny", "canaries": "intent-tiny.canaries.jsonl"},
        seed=0,
        theoretical_epsilon=None,
        delta=1e-5,
        rows=rows,
        exposure_method="rank",
    )


def _whole(text: str, words) -> None:
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in text
    for word in words:
        assert any(word in line for line in lines), f"{word!r} is cut or wrapped"


@pytest.mark.parametrize("width", [80, 60])
def test_mia_names_stay_whole_on_a_narrow_terminal(width):
    text = _text(print_mia, _mia(), width)
    _whole(text, ATTACKS)
    assert "TPR@1%" in text and "ε DP" in text  # every column, stacked
    assert all(len(line) <= width for line in text.splitlines())


def test_mia_a_wide_terminal_gets_the_table():
    text = _text(print_mia, _mia(), 120)
    header = next(line for line in text.splitlines() if line.lstrip().startswith("attack"))
    assert header.split() == ["attack", "AUC", "TPR@0.1%", "TPR@1%", "TPR@10%", "adv.", "ε", "≥", "ε", "DP"]
    _whole(_text(print_mia, _mia(("loss", "gap")), 80), ("loss", "gap"))  # a few short names: the table at 80


def test_canary_labels_and_headers_stay_whole_at_80_columns():
    text = _text(print_canary, _canaries(), 80)
    _whole(text, (*LABELS, *CANARY_HEADERS))
    # The cells are there, stacked under their canary: the first (recovered) one's rank and guess.
    assert "loss rank 1 / 10000" in text and "ModIvA rank 4" in text and "✓" in text


def test_canary_a_wide_terminal_gets_the_table():
    text = _text(print_canary, _canaries(), 160)
    header = next(line for line in text.splitlines() if "secret" in line and "ModIvA rank" in line)
    for word in ("label", *CANARY_HEADERS):
        assert word in header


def _bounds():
    rng = np.random.default_rng(0)
    return CanaryScoreAuditor(rng.normal(1.0, 1.0, 100), rng.normal(0.0, 1.0, 100)).audit(0.05, 1e-5)


def test_dp_audit_bounds_fit_at_80_and_stack_below():
    headers = ("analysis", "ε lower bound", "μ lower bound", "guesses")
    analyses = ("f-DP, (ε, δ) family", "f-DP, Gaussian family*", "Steinke et al. 2023")
    for width in (80, 50):
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(bounds_view(_bounds(), console, title="one-run audit: canary-scores.jsonl (scores)"))
        text = console.export_text()
        _whole(text, analyses)
        if width == 80:
            assert all(h in text for h in headers)  # the table, every header whole
        else:
            assert "ε ≥" in text and "guesses" in text and "right" in text  # stacked, one block per analysis


def test_slice_labels_and_attack_names_stay_whole_at_80_columns():
    from privaudit.mia.records import Examples
    from privaudit.mia.slices import compute_slices
    from privaudit.report.slice_table import slice_views

    result = _mia(("modified-entropy", "label-only-augment", "lira-offline"))
    n = result.is_member.size
    labels = tuple(LABELS[i % 3] for i in range(n))
    examples = Examples(sets=("members",) * n, files=("f",) * n, index=np.arange(n), labels=labels)
    slices = compute_slices(["class"], examples=examples, is_member=result.is_member, attacks=result.attacks)
    texts = {}
    for width in (80, 200):
        console = Console(width=width, record=True, file=io.StringIO())
        for view in slice_views(slices, console):
            console.print(view)
        texts[width] = console.export_text()
    _whole(texts[80], (*LABELS[:3], "modified-entropy", "label-only-augment", "TPR@10%"))
    assert "too few" not in texts[80] and "in/out" not in texts[80]  # stacked: one block per slice and attack
    assert "in/out" in texts[200]  # the table, where it fits

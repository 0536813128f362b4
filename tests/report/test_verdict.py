"""The verdict first: the HTML report and the terminal table open with the gate's verdict and the headline numbers.

The HTML page is also rendered in headless Chromium (skipped where none is installed: ``apt-get install chromium``)
and its first screen checked pixel by pixel: the verdict box and the ROC plot are above the fold.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from privaudit.canary.run import CanaryResult
from privaudit.gate.gate import Check, GateResult, Threshold, parse_threshold, run_gate
from privaudit.gate.measurements import Measurement, mia_measurements, mia_metrics
from privaudit.mia.records import largest_epsilon_bound, strongest_attack
from privaudit.mia.run import AttackResult, MiaResult
from privaudit.report.canary_html import render_canary_html
from privaudit.report.formats import print_gate
from privaudit.report.html import render_html, write_html
from privaudit.report.table import print_mia, print_summary
from privaudit.stats.metrics import evaluate

N_PER_SIDE = 300
# Ten attacks, as in 'make demo': the long names are the ones that wrapped at 80 columns.
ATTACKS = (
    ("loss", 0.6),
    ("gap", 0.3),
    ("modified-entropy", 0.7),
    ("reference-loss", 1.0),
    ("lira-offline", 1.6),
    ("lira-online", 1.2),
    ("rmia", 1.4),
    ("min-k-prob", 0.5),
    ("label-only-augment", 0.2),
    ("entropy", 0.4),
)


def _result(*, epsilon: float | None = 1.0, attacks=ATTACKS) -> MiaResult:
    is_member = np.r_[np.ones(N_PER_SIDE, bool), np.zeros(N_PER_SIDE, bool)]
    results = []
    for i, (name, mu) in enumerate(attacks):
        scores = np.random.default_rng(i).normal(0.0, 1.0, is_member.size) + mu * is_member
        metrics = evaluate(scores, is_member, delta=1e-5, n_bootstrap=100, seed=i)
        results.append(AttackResult(name, f"{name}, synthetic", {}, metrics, scores))
    return MiaResult(
        model={"path": "models/target"},
        seed=0,
        theoretical_epsilon=epsilon,
        delta=1e-5,
        n_members=N_PER_SIDE,
        n_non_members=N_PER_SIDE,
        n_reference_models=4,
        attacks=results,
        is_member=is_member,
    )


def _gate(result: MiaResult, *specs: str) -> GateResult:
    return run_gate(
        mia_measurements(result), [parse_threshold(s, metrics=mia_metrics(), source="--fail-above") for s in specs]
    )


@pytest.fixture(scope="module")
def result() -> MiaResult:
    return _result()


@pytest.fixture(scope="module")
def failing(result: MiaResult) -> GateResult:
    gate = _gate(result, "lira-offline:tpr@1%fpr=0.05", "advantage=0.9")
    assert gate.verdict == "fail" and len(gate.failed) == 1
    return gate


# --- the HTML page ---------------------------------------------------------------------------------------------


def test_the_page_opens_with_verdict_strongest_attack_bound_and_one_roc(result, failing):
    page = render_html(result, gate=failing)
    strongest, largest = strongest_attack(result.attacks), largest_epsilon_bound(result.attacks)
    assert strongest.name == "lira-offline"  # the strongest signal (mu = 1.6) also has the highest TPR at 1% FPR
    t = next(t for t in strongest.metrics.tpr_at_fpr if t.fpr == 0.01)
    verdict = page.index("Verdict: FAIL")
    assert "lira-offline: tpr@1%fpr &lt;= 0.05 (measured" in page  # the failed check, escaped
    tpr = f"TPR {t.tpr:.3f} [{t.low:.3f}, {t.high:.3f}] at 1% FPR (95% CI)"
    bound = f"{largest.metrics.epsilon_lower_bound:.3f} &gt; theoretical ε"
    roc = page.index('alt="ROC curves of all attacks, log-log axes"')
    settings, tables = page.index("<h2>Audit</h2>"), page.index("<h2>Attacks</h2>")
    assert verdict < page.index(tpr) < page.index(bound) < roc < settings < tables
    assert page.count("<img") == 2  # one ROC plot of every attack, and the histograms at the end
    assert page.index("Score distributions") > tables


def test_a_passing_gate_and_no_gate_say_so(result):
    passing = _gate(result, "auc=0.99")
    assert passing.verdict == "pass"
    assert "Verdict: PASS" in render_html(result, gate=passing)
    assert "Not gated" in render_html(result)  # the Python API writes a report without a gate


def test_without_dp_the_bound_stands_beside_no_claim():
    page = render_html(_result(epsilon=None), gate=_gate(_result(epsilon=None), "auc=0.99"))
    head = page[: page.index("<h2>Audit</h2>")]
    assert "theoretical ε</th><td>none (trained without DP)" in head and "&gt; theoretical ε" not in head


def test_the_canary_page_opens_with_the_verdict():
    canary = CanaryResult(
        model={"path": "models/target", "canaries": "canaries.jsonl"},
        seed=0,
        theoretical_epsilon=None,
        delta=1e-5,
        rows=[],
        exposure_method=None,
    )
    threshold = Threshold("fail_above", "exposure", 5.0, source="--fail-above")
    measured = Measurement("inserted", "exposure", 9.5, None, None, None)
    check = Check(threshold, "inserted", "failed", measured, "inserted: exposure = 9.5 is above 5")
    page = render_canary_html(canary, gate=GateResult(thresholds=(threshold,), checks=(check,)))
    verdict = page.index("Verdict: FAIL")
    assert verdict < page.index("inserted: exposure &lt;= 5 (measured 9.5)") < page.index("canary file")
    assert "Not gated" in render_canary_html(canary)


# --- the terminal ----------------------------------------------------------------------------------------------


def _terminal(result: MiaResult, gate: GateResult, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    print_summary(result, gate, console)
    print_mia(result, console)
    print_gate(gate, console)
    return console.export_text().splitlines()


def test_the_table_output_leads_with_the_summary_in_at_most_12_lines_at_80_columns(result, failing):
    lines = _terminal(result, failing)
    end = next(i for i, line in enumerate(lines) if line.startswith("╰"))
    summary = "\n".join(lines[: end + 1])
    assert end + 1 <= 12 and all(len(line) <= 80 for line in lines[: end + 1])
    strongest, largest = strongest_attack(result.attacks), largest_epsilon_bound(result.attacks)
    t = next(t for t in strongest.metrics.tpr_at_fpr if t.fpr == 0.01)
    assert "fail: 1 of" in summary and "lira-offline: tpr@1%fpr <= 0.05 (measured" in summary
    assert f"strongest attack: lira-offline, TPR {t.tpr:.3f} at 1% FPR (95% CI {t.low:.3f}–{t.high:.3f})" in summary
    assert f"empirical ε ≥ {largest.metrics.epsilon_lower_bound:.3f} > ε ({largest.name}, 95%)" in summary
    assert "theoretical ε 1.000" in summary
    assert "membership inference: models/target" in "\n".join(lines[end + 1 :])  # the tables follow


def test_many_failed_checks_still_fit_in_12_lines(result):
    gate = _gate(result, "auc=0.5", "advantage=0.01", "epsilon_lb=0")
    assert len(gate.failed) > 20
    lines = _terminal(result, gate)
    end = next(i for i, line in enumerate(lines) if line.startswith("╰"))
    assert end + 1 <= 12
    assert re.search(r"and \d+ more: see the gate below", "\n".join(lines[:end]))


# --- headless Chromium ---------------------------------------------------------------------------------------------

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_WIDTH, _HEIGHT = 1280, 1400


def _browser() -> str:
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium (apt-get install chromium)")


def _screenshot(page: Path, out: Path) -> np.ndarray:
    from PIL import Image

    subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={_WIDTH},{_HEIGHT}", f"--screenshot={out}", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _rows_with(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 10, least: int = 20) -> np.ndarray:
    """The rows of the screenshot holding at least ``least`` pixels of colour ``rgb``."""
    near = (np.abs(pixels - np.array(rgb)) <= tolerance).all(axis=2)
    return np.flatnonzero(near.sum(axis=1) >= least)


def test_the_first_screen_in_chromium_shows_the_verdict_and_the_roc(result, failing, tmp_path):
    path = tmp_path / "audit.html"
    write_html(result, path, gate=failing)
    pixels = _screenshot(path, tmp_path / "audit.png")
    assert pixels.shape == (_HEIGHT, _WIDTH, 3)
    verdict = _rows_with(pixels, (0xFD, 0xEC, 0xEA), least=400)  # the failing verdict box's pink background
    assert verdict.size and verdict.min() < _HEIGHT // 5, "no verdict box at the top of the page"
    # The ROC curves: matplotlib's first two colours, drawn within the first screen, below the verdict.
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        rows = _rows_with(pixels, colour, tolerance=30, least=3)
        assert rows.size and rows.min() > verdict.min(), f"no ROC curve of colour {colour} on the first screen"

    passing = tmp_path / "pass.html"
    write_html(result, passing, gate=_gate(result, "auc=0.99"))
    green = _rows_with(_screenshot(passing, tmp_path / "pass.png"), (0xE8, 0xF5, 0xE9), least=400)
    assert green.size and green.min() < _HEIGHT // 5, "no passing verdict box at the top of the page"

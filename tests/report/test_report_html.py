"""Tests for privaudit.report.html and privaudit.report.plots, on audits built by hand from synthetic scores."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from privaudit.errors import PrivauditError
from privaudit.mia.run import AttackResult, MiaResult
from privaudit.report import html as report_html
from privaudit.report.html import render_html, write_html
from privaudit.report.plots import candidate_loss_figure, histogram_figure, roc_figure
from privaudit.stats.metrics import evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_PER_SIDE = 200
FINGERPRINT = "ab12cd34ef56" + "0" * 52


def _attack(name: str, mu: float, is_member: np.ndarray, seed: int, delta: float) -> AttackResult:
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, 1.0, is_member.size) + mu * is_member
    metrics = evaluate(scores, is_member, delta=delta, n_bootstrap=200, seed=seed)
    return AttackResult(name, f"{name} attack, synthetic", {"mu": mu}, metrics, scores)


def _result(*, epsilon: float | None = 8.0, path: str = "models/target", names=("loss", "lira")) -> MiaResult:
    """Two attacks on 200 members and 200 non-members: a strong one (mu=3) and a weak one (mu=0.3)."""
    is_member = np.r_[np.ones(N_PER_SIDE, bool), np.zeros(N_PER_SIDE, bool)]
    delta = 1e-5
    attacks = [_attack(n, mu, is_member, i, delta) for i, (n, mu) in enumerate(zip(names, (3.0, 0.3)))]
    return MiaResult(
        model={"path": path, "fingerprint": FINGERPRINT},
        seed=0,
        theoretical_epsilon=epsilon,
        delta=delta,
        n_members=N_PER_SIDE,
        n_non_members=N_PER_SIDE,
        n_reference_models=4,
        attacks=attacks,
        is_member=is_member,
    )


@pytest.fixture
def stub_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of the page's text need no real figure; drawing them is the slow part."""
    monkeypatch.setattr(report_html, "roc_figure", lambda attacks: PNG_SIGNATURE + b"roc")
    monkeypatch.setattr(report_html, "histogram_figure", lambda attacks, is_member: PNG_SIGNATURE + b"hist")


@pytest.fixture(scope="module")
def result() -> MiaResult:
    return _result()


@pytest.fixture(scope="module")
def page(result: MiaResult, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "audit.html"
    write_html(result, path)
    return path.read_text(encoding="utf-8")


# --- the document --------------------------------------------------------------------------------------------


def test_write_html_writes_one_self_contained_document(page: str):
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert 'src="http' not in page and "href=" not in page and "<link" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2  # the ROC plot and the histograms
    assert all(base64.b64decode(img).startswith(PNG_SIGNATURE) for img in images)
    assert len(re.findall(r"<img ", page)) == len(images)


def test_write_html_leaves_no_temporary_file_and_replaces(stub_figures: None, result: MiaResult, tmp_path: Path):
    path = tmp_path / "audit.html"
    path.write_text("old", encoding="utf-8")
    write_html(result, path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["audit.html"]


def test_write_html_creates_missing_directories(stub_figures: None, result: MiaResult, tmp_path: Path):
    write_html(result, tmp_path / "out" / "audit.html")
    assert (tmp_path / "out" / "audit.html").read_text().startswith("<!DOCTYPE html>")


def test_write_html_to_unwritable_place_raises(stub_figures: None, result: MiaResult, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(PrivauditError, match="cannot write the HTML report"):
        write_html(result, blocker / "audit.html")
    assert blocker.read_text() == "not a directory"


def test_header_shows_the_audit_settings(page: str):
    assert "models/target" in page
    assert "ab12cd34ef56" in page and f">{FINGERPRINT}<" not in page  # short in the text, full in the tooltip
    for value in ("seed", "members", "non-members", "reference models", ">4<", ">200<", "8.000", "1e-05"):
        assert value in page


def test_header_without_dp_says_so(stub_figures: None):
    assert "none (trained without DP)" in render_html(_result(epsilon=None))


def test_each_attack_has_its_name_and_formatted_auc(result: MiaResult, page: str):
    for attack in result.attacks:
        auc = attack.metrics.auc
        assert f"<h3>{attack.name}</h3>" in page
        assert f"{auc.value:.3f} [{auc.low:.3f}, {auc.high:.3f}]" in page
        assert f"{attack.metrics.epsilon_lower_bound:.3f}" in page
        assert f"{attack.metrics.advantage:.3f}" in page


def test_unsupported_tpr_says_too_few_non_members(result: MiaResult, page: str):
    # 200 non-members cannot measure FPR 0.1%; they can measure 1% and 10%.
    supported = [t.supported for t in result.attacks[0].metrics.tpr_at_fpr]
    assert supported == [False, True, True]
    assert page.count("n/a: too few non-members") == len(result.attacks)
    t = result.attacks[0].metrics.tpr_at_fpr[1]
    assert f"{t.tpr:.3f} [{t.low:.3f}, {t.high:.3f}]" in page


# --- the warning ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [None, 50.0])
def test_no_warning_when_no_bound_exceeds(stub_figures: None, epsilon: float | None):
    page = render_html(_result(epsilon=epsilon))
    assert "privacy claim violated" not in page and 'class="warning"' not in page


def test_warning_names_only_the_attacks_whose_bound_exceeds(stub_figures: None):
    strong, weak = _result(epsilon=8.0).attacks
    assert strong.metrics.epsilon_lower_bound > weak.metrics.epsilon_lower_bound
    # A theoretical epsilon between the two bounds: only the strong attack violates it.
    epsilon = (strong.metrics.epsilon_lower_bound + weak.metrics.epsilon_lower_bound) / 2
    result = _result(epsilon=epsilon)
    assert [a.name for a in result.exceeded()] == ["loss"]
    page = render_html(result)
    warning = re.search(r'<div class="warning".*?</div>', page, re.S).group(0)
    assert "privacy claim violated" in warning
    assert "DP implementation" in warning and "metadata" in warning
    assert "<strong>loss</strong>" in warning and "lira" not in warning
    assert page.count('class="num exceeded"') == 1


# --- escaping and determinism --------------------------------------------------------------------------------


def test_user_strings_are_escaped(stub_figures: None):
    result = _result(path="<script>alert('x')</script>", names=("loss<b>", "a&b"))
    result.attacks[0].params["note"] = '"><img src=x>'
    page = render_html(result, title="<i>audit</i> & co")
    assert "<script" not in page and "<b>" not in page and "<i>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "loss&lt;b&gt;" in page and "a&amp;b" in page
    assert "<title>&lt;i&gt;audit&lt;/i&gt; &amp; co</title>" in page


def test_same_result_gives_identical_bytes(page: str, tmp_path: Path):
    path = tmp_path / "again.html"
    write_html(_result(), path)  # rebuilt from the same seeds
    assert path.read_bytes() == page.encode("utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert all(b"Software" not in base64.b64decode(img) for img in images)  # no matplotlib version stamp


# --- plots ---------------------------------------------------------------------------------------------------


def test_candidate_loss_figure():
    losses = np.random.default_rng(0).gamma(4.0, 1.0, 10_000)
    png = candidate_loss_figure(losses, 0.05, "my secret is {d}{d}{d} $5")
    assert png.startswith(PNG_SIGNATURE)
    assert png == candidate_loss_figure(losses, 0.05, "my secret is {d}{d}{d} $5")
    with pytest.raises(PrivauditError):
        candidate_loss_figure(np.array([np.nan]), 0.0, "t")


def test_figures_reject_bad_input(result: MiaResult):
    with pytest.raises(PrivauditError):
        roc_figure([])
    with pytest.raises(PrivauditError, match="must match"):
        histogram_figure(result.attacks, result.is_member[:-1])


def test_histograms_lay_out_many_attacks_with_dollar_names(result: MiaResult):
    # Four panels on a 3 x 2 grid, two left blank; a lone "$" must not start mathtext.
    many = [AttackResult(f"$a{i}", "", {}, a.metrics, a.scores) for i, a in enumerate(result.attacks * 2)]
    assert histogram_figure(many, result.is_member).startswith(PNG_SIGNATURE)
    assert roc_figure(many).startswith(PNG_SIGNATURE)

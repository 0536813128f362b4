"""``privaudit/report/sweep_html.py``: the sweep page from plain rows, without training anything."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

from privaudit.report.sweep_html import render_sweep_html


def _row(name: str, eps: float | None, tpr: float, canaries: bool) -> dict:
    return {
        "name": name,
        "target_epsilon": eps,
        "epsilon": eps,
        "noise_multiplier": None if eps is None else 1.0,
        "utility": {"accuracy": 0.8 if eps is None else 0.4, "macro_f1": 0.7, "n": 100},
        "attacks": [
            {
                "name": "lo<ss",
                "auc": {"value": 0.6, "low": 0.55, "high": 0.65},
                "tpr_at_1%fpr": {"tpr": tpr, "low": tpr / 2, "high": tpr * 2},
                "epsilon_lower_bound": 0.3,
                "epsilon_lower_bound_50": 0.6,
            }
        ],
        "empirical_epsilon": {"attack": "lo<ss", "lower_bound": 0.3, "median": 0.6, "confidence": 0.95},
        "canaries": {"mean_exposure_inserted": 3.0, "mean_exposure_controls": 1.0, "log2_space": 13.3}
        if canaries
        else None,
        "one_run": None,
    }


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def document(canaries: bool) -> dict:
    points = [
        _row("eps-1", 1.0, 0.01, canaries),
        _row("eps-inf", None, 0.1, canaries),
        _row("eps-8", 8.0, 0.02, canaries),
    ]
    return {"data": "d<.jsonl", "non_members": "n.jsonl", "attacks": "loss", "reference_models": 0, "points": points}


def test_four_png_plots_and_escaped_names() -> None:
    for canaries in (True, False):
        page = render_sweep_html(document(canaries))
        parser = _Images()
        parser.feed(page)
        assert len(parser.sources) == 4
        for src in parser.sources:
            assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
        assert "lo&lt;ss" in page and "lo<ss" not in page and "d&lt;.jsonl" in page
        # Points in epsilon order, the no-DP point last.
        assert page.index(">eps-1<") < page.index(">eps-8<") < page.index(">eps-inf<")

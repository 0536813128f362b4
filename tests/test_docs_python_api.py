"""``docs/python-api.md`` runs as written: every ```python block, in order, in one namespace.

The blocks run in a temporary working directory in which ``fixtures`` is the repository's, so the page's paths read
as from a clone's root while what it writes (the model, the reference cache) stays out of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python-api.md"


def python_blocks(text: str) -> list[str]:
    """The body of every fenced block opened with ```python, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_page_has_blocks():
    assert len(python_blocks(PAGE.read_text(encoding="utf-8"))) >= 8


def test_the_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fixtures").symlink_to(ROOT / "fixtures", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(PAGE.read_text(encoding="utf-8")), start=1):
        exec(compile(block, f"{PAGE.name} block {i}", "exec"), namespace)
    assert namespace["result"].to_dict()["n_members"] == 300
    assert {"scoring", "attacks"} <= namespace["stages"]
    assert sorted(p.name for p in namespace["plots"].iterdir()) == ["mia.html", "roc.png"]
    assert namespace["message"].startswith("missing.jsonl: no such file")

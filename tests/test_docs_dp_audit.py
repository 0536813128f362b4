"""``docs/dp-audit.md``'s "Audit your own DP training" runs as written: its ```python blocks, in order, in one
namespace, in a temporary directory holding ``fixtures`` (the repository's) and ``base`` (a tiny BERT generated here,
with a vocabulary of the fixture data's words and thousands it never uses); then the page's gate on what they wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from outside.opacus_loop import make_base

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "dp-audit.md"


def python_blocks(text: str) -> list[str]:
    """The body of every fenced block opened with ```python, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_section_has_an_opacus_loop_and_a_trainer():
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 2
    assert "GradientCanaries(" in blocks[0] and "optimizer.step()" in blocks[0]
    assert "class DPTrainer(Trainer)" in blocks[1] and ".train()" in blocks[1]


def test_the_section_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:
    (tmp_path / "fixtures").symlink_to(ROOT / "fixtures", target_is_directory=True)
    rows = [
        json.loads(line) for line in (ROOT / "fixtures/data/members.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    make_base(tmp_path / "base", texts=[r["text"] for r in rows], num_labels=len({r["label"] for r in rows}))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(PAGE.read_text(encoding="utf-8")), start=1):
        exec(compile(block, f"{PAGE.name} block {i}", "exec"), namespace)
    assert namespace["canaries"].steps == namespace["trainer_canaries"].steps == 40  # 2 epochs at q = 0.05
    assert namespace["claimed"] == pytest.approx(8.0, abs=0.05)
    for name in ("run", "trainer"):
        result = run_cli(
            "dp-audit", "--canaries", f"{name}.canaries.jsonl", "--epsilon", 8, "--fail-if-bound-exceeds-epsilon"
        )
        assert result.exit_code == 0, result.output
        assert "estimate, not a bound" in result.stdout

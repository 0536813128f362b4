"""A third-party extraction attack, found through its entry point, end to end in ``privaudit canary`` and ``attacks``.

The plugin is a real package, ``tests/plugins/privaudit_demo_extraction`` with its own ``pyproject.toml``. Rather than
pip-install it into the venv, the fixture writes the ``*.dist-info`` an installer would write (``METADATA`` and
``entry_points.txt``, from that ``pyproject.toml``) into a temporary directory and puts it on ``sys.path`` with the
package's source: ``importlib.metadata`` finds distributions on ``sys.path``, so privaudit discovers the plugin exactly
as it would an installed one. The package holds a working black-box attack and a broken one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from privaudit.canary.registry import EXTRACTION
from privaudit.cli.app import app

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "tests" / "plugins" / "privaudit_demo_extraction"
MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
CANARIES = ROOT / "fixtures" / "models" / "intent-tiny.canaries.jsonl"
SCHEMA = json.loads((ROOT / "docs" / "schema-canary.json").read_text(encoding="utf-8"))


def write_dist_info(site: Path, project: Path) -> Path:
    """Write the ``*.dist-info`` of ``project`` (its name, version and entry points) into ``site``; return it."""
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n", encoding="utf-8"
    )
    groups = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
        for group, entries in meta["entry-points"].items()
    )
    (dist / "entry_points.txt").write_text(groups, encoding="utf-8")
    return dist


@pytest.fixture
def installed(tmp_path, monkeypatch) -> list[str]:
    """The demo plugin, installed for this test only; returns the ``sys.path`` entries that install it."""
    site = tmp_path / "site-packages"
    write_dist_info(site, PLUGIN)
    for entry in (PLUGIN, site):
        monkeypatch.syspath_prepend(str(entry))
    return [str(site), str(PLUGIN)]


def canary(*args: str, columns: int = 200):
    return CliRunner().invoke(app, ["canary", str(MODEL), "-c", str(CANARIES), *args], env={"COLUMNS": str(columns)})


def test_the_plugin_is_discovered_without_being_imported(installed):
    assert EXTRACTION.names() == ["exposure", "modiva", "broken-extraction", "greedy-slots"]
    assert "privaudit_demo_extraction.broken" not in sys.modules
    assert EXTRACTION.get_class("greedy-slots").parameter_names() == ["sweeps"]


def test_plugin_runs_end_to_end_in_privaudit_canary(installed, tmp_path):
    report = tmp_path / "canary.html"
    result = canary(
        "--attack", "greedy-slots", "--attack-option", "greedy-slots:sweeps=1", "--one-run",
        "--format", "json", "--report", str(report),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    rows = document["canaries"]
    assert len(rows) == 20 and document["exposure_method"] is None and document["one_run"]["m"] == 200
    for row in rows:
        assert row["exposure"] is None and "extraction" not in row  # the built-ins did not run
        found = row["extraction_attacks"]["greedy-slots"]
        assert len(found["guess"]) == 4 and found["queries"] == 40  # one sweep over four ten-digit slots
        assert found["recovered"] == (found["guess"] == row["secret"])
    # Measured: one greedy sweep recovers none of the secrets exactly; the test is of the plumbing, not of the attack.
    assert "greedy-slots guess" in report.read_text(encoding="utf-8")
    table = canary("--attack", "greedy-slots", "--attack-option", "greedy-slots:sweeps=1")
    assert table.exit_code == 0, table.output
    assert "greedy-slots guess" in table.stdout and "greedy-slots recovered" in table.stdout


def test_broken_plugin_is_listed_and_breaks_only_runs_that_select_it(installed):
    listing = CliRunner().invoke(app, ["attacks"], env={"COLUMNS": "80"})
    assert listing.exit_code == 0, listing.output
    assert "greedy-slots" in listing.stdout and "broken-extraction" in listing.stdout
    assert "broken:" in listing.stdout and "privaudit_demo_missing_dependency" in listing.stdout.replace("\n", "")
    result = canary("--attack", "exposure,broken-extraction")
    assert result.exit_code == 2
    assert "extraction attack plugin 'broken-extraction'" in result.stderr and "ModuleNotFoundError" in result.stderr
    assert "Traceback" not in result.output


def test_privaudit_attacks_lists_both_kinds_at_80_columns_without_cutting_a_cell(installed):
    result = CliRunner().invoke(app, ["attacks"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines if line.count("│") == 4}
    assert rows["loss"] == rows["rmia"] == "membership"
    assert rows["exposure"] == rows["modiva"] == rows["greedy-slots"] == rows["broken-extraction"] == "extraction"
    text = " ".join(line.split("│")[3].strip() for line in lines if line.count("│") == 4)
    assert "population_reference_logits" in text  # the longest need, whole
    assert "privaudit_demo_extraction.greedy:GreedySlots" in text.replace(" ", "")  # folded, never cut


def test_console_script_discovers_the_plugin_from_its_entry_point(installed):
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": os.pathsep.join(installed)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "privaudit"), "attacks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "greedy-slots" in result.stdout and "broken-extraction" in result.stdout

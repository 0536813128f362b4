"""``privaudit attacks`` (both kinds, at 80 columns) and how ``privaudit canary`` selects its extraction attacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import privaudit.canary.run
from privaudit.canary.run import CanaryResult
from privaudit.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
CANARIES = ROOT / "fixtures" / "models" / "intent-tiny.canaries.jsonl"
runner = CliRunner()


def _cells(output: str) -> dict[str, list[str]]:
    """Each attack's row of the table: its name cell, then the other cells, lines of a cell joined by spaces."""
    rows: dict[str, list[str]] = {}
    name = None
    for line in output.splitlines():
        if line.count("│") != 4:
            continue
        cells = [cell.strip() for cell in line.split("│")[1:4]]
        if cells[0]:
            name = cells[0]
            rows[name] = cells[1:]
        elif name is not None:
            rows[name] = [" ".join(filter(None, pair)) for pair in zip(rows[name], cells[1:])]
    return rows


@pytest.mark.parametrize("columns", [80, 200])
def test_attacks_lists_both_kinds_and_cuts_nothing(columns):
    result = runner.invoke(app, ["attacks"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= columns and "…" not in result.stdout
    rows = _cells(result.stdout)
    kinds = {name: cells[0] for name, cells in rows.items()}
    assert kinds == {
        **dict.fromkeys(
            [
                "confidence",
                "entropy",
                "gap",
                "label-only-augment",
                "lira-offline",
                "lira-online",
                "loss",
                "modified-entropy",
                "reference-loss",
                "rmia",
            ],
            "membership",
        ),
        "exposure": "extraction",
        "modiva": "extraction",
    }
    assert "needs: logits, population_logits, population_reference_logits, reference_logits" in rows["rmia"][1]
    assert "needs: inputs_embeds" in rows["modiva"][1] and "temperature_start" in rows["modiva"][1]
    assert "needs: scores parameters: sample source: built-in" in rows["exposure"][1]


@pytest.fixture
def requests(monkeypatch):
    """Replaces the audit; returns the requests the command made."""
    seen = []

    def run(request, *, progress=None):
        seen.append(request)
        return CanaryResult(model={"path": "m", "fingerprint": "f", "canaries": "c"}, seed=0,
                            theoretical_epsilon=None, delta=1e-5, rows=[], exposure_method=None)  # fmt: skip

    monkeypatch.setattr(privaudit.canary.run, "run_canary", run)
    return seen


def canary(*args: str):
    return runner.invoke(app, ["canary", str(MODEL), "-c", str(CANARIES), *args], env={"COLUMNS": "200"})


def test_attack_flags_reach_the_request(requests):
    assert canary("--attack", "modiva", "-a", "exposure,modiva", "--attack-option", "modiva:steps=5").exit_code == 0
    assert canary("--no-extract").exit_code == 0
    (flags, legacy) = requests
    assert (flags.attacks, flags.attack_options, flags.exposure, flags.extract) == (
        "exposure,modiva", ("modiva:steps=5",), True, True,
    )  # fmt: skip
    assert (legacy.attacks, legacy.attack_options, legacy.exposure, legacy.extract) == (None, (), True, False)


def test_attack_and_options_come_from_the_config_file(requests, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "privaudit.toml").write_text('[canary]\nattack = ["modiva"]\nattack_options = { "modiva:steps" = 9 }\n')
    assert canary().exit_code == 0
    assert (requests[0].attacks, requests[0].attack_options) == ("modiva", ("modiva:steps=9",))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "exposure,modiva", "--no-extract"], "--attack names 'modiva', which --no-extract turns off"),
        (["--attack", "exposure", "--attack-option", "modiva:steps=5"], "'modiva', which is not selected"),
        (["--attack", "nope"], "unknown extraction attack 'nope'; choose from: all, exposure, modiva"),
        (["--attack-option", "modiva:stepz=5"], "extraction attack 'modiva' has no parameter 'stepz'"),
    ],
)
def test_bad_selections_exit_2_with_one_line_before_the_model_loads(args, message, monkeypatch):
    monkeypatch.setattr("privaudit.target.Target.load", lambda *a, **k: pytest.fail("loaded the model"))
    result = canary(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output

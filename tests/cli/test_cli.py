"""The command line (``privaudit/cli/``): train and epsilon end to end, and how every bad input fails.

A failure must exit 2 with one line on stderr that names the file or flag, show no traceback (unless ``--debug``), and
leave no output behind. ``privaudit train`` runs the default architecture here, on 60 examples for one epoch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from conftest import CANARY_TEMPLATE, FIXTURE_DATA, FIXTURE_MODEL, ROOT, write_jsonl
from safetensors.torch import load_file

from privaudit import __version__
from privaudit.canary.canaries import read_canaries
from privaudit.data import fingerprint, read_dataset
from privaudit.target import Target

EPSILON_FLAGS = ["--noise-multiplier", "1.5", "--sample-rate", "0.04", "--steps", "2250", "--delta", "1e-5"]
MEMBERS = FIXTURE_DATA / "members.jsonl"
NON_MEMBERS = FIXTURE_DATA / "non_members.jsonl"
TRAIN_FAST = ["--epochs", "1", "--max-length", "16"]


def recipe_of(model_dir: Path) -> dict:
    return json.loads((model_dir / "privaudit.json").read_text(encoding="utf-8"))


# --- epsilon -------------------------------------------------------------------------------------------------------------


def test_epsilon_from_flags_rdp(run_cli) -> None:
    result = run_cli("epsilon", *EPSILON_FLAGS)
    assert result.exit_code == 0, result.output
    assert result.stdout == "epsilon = 7.329 (delta = 1e-05, accountant = rdp)\n"  # Opacus's known answer
    assert result.stderr == ""


def test_epsilon_from_flags_prv(run_cli) -> None:
    result = run_cli("epsilon", *EPSILON_FLAGS, "--accountant", "prv")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"epsilon = 6\.77\d \(delta = 1e-05, accountant = prv\)\n", result.stdout), result.stdout


def test_epsilon_needs_a_model_or_every_flag(run_cli) -> None:
    result = run_cli("epsilon", "--noise-multiplier", "1.5", "--steps", "10")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: give a model directory, or all of --sample-rate, --delta"


# --- train ---------------------------------------------------------------------------------------------------------------


def test_train_with_canaries_then_load(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    out, canaries = tmp_path / "model", tmp_path / "canaries.jsonl"
    canary_flags = ["--canary", CANARY_TEMPLATE, "--canary-label", "random", "--canary-count", "2"]
    canary_flags += ["--canary-repeats", "3", "--canaries-out", canaries]
    result = run_cli("train", tiny_data, "--out", out, *TRAIN_FAST, *canary_flags)
    assert result.exit_code == 0, result.output
    target = Target.load(out)
    assert target.n_labels == 3 and target.max_length == 16
    dataset = read_dataset(tiny_data)
    recipe = recipe_of(out)
    assert recipe["data"]["fingerprint"] == fingerprint(dataset.texts, dataset.labels)
    assert recipe["data"]["n_with_canaries"] == 60 + 2 * 3
    assert recipe["dp"] is None
    assert [(c.inserted, c.repeats) for c in read_canaries(canaries)] == [(True, 3), (True, 3), (False, 0), (False, 0)]
    assert re.search(r"examples\s+│ 66 ", result.stdout), result.stdout
    assert f"4 records in {canaries}" in result.stdout


def test_train_with_dp_then_epsilon_of_the_model(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    out = tmp_path / "model"
    result = run_cli(
        "train", tiny_data, "--out", out, *TRAIN_FAST, "--dp", "--noise-multiplier", "1.0", "--delta", "1e-3"
    )
    assert result.exit_code == 0, result.output
    Target.load(out)
    dp = recipe_of(out)["dp"]
    assert (dp["noise_multiplier"], dp["delta"], dp["accountant"]) == (1.0, 1e-3, "rdp")
    assert f"{dp['epsilon']:.3f} (delta = 0.001, rdp)" in result.stdout
    again = run_cli("epsilon", out)
    assert again.exit_code == 0, again.output
    assert again.stdout == f"epsilon = {dp['epsilon']:.3f} (delta = 0.001, accountant = rdp)\n"


# --- failures ------------------------------------------------------------------------------------------------------------


def _train(data: Path, tmp: Path, *flags: object) -> list[object]:
    return ["train", data, "--out", tmp / "model", *TRAIN_FAST, *flags]


# Each case makes its inputs in tmp and returns the arguments and what the error line must contain.


def missing_data_file(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    return _train(tmp / "missing.jsonl", tmp), [f"{tmp / 'missing.jsonl'}: no such file"]


def malformed_jsonl_line(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    bad = tmp / "bad.jsonl"
    bad.write_text('{"text": "play jazz", "label": "play_music"}\n{oops\n', encoding="utf-8")
    return _train(bad, tmp), [f"{bad}:2: not JSON"]


def empty_data_set(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    return _train(write_jsonl(tmp / "empty.jsonl", []), tmp), [f"{tmp / 'empty.jsonl'}: no examples"]


def unknown_canary_label(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    flags = ["--canary", CANARY_TEMPLATE, "--canary-label", "book_flight", "--canaries-out", tmp / "c.jsonl"]
    return _train(data, tmp, *flags), ["--canary-label 'book_flight'", "get_weather, play_music, set_alarm"]


def zero_noise_with_dp(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    return _train(data, tmp, "--dp", "--noise-multiplier", "0"), ["--noise-multiplier must be above 0"]


def existing_out(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    (tmp / "model").mkdir()
    (tmp / "model" / "keep.txt").write_text("mine", encoding="utf-8")
    return _train(data, tmp), [f"{tmp / 'model'}: already exists", "--overwrite"]


def canaries_out_inside_out(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    flags = ["--canary", CANARY_TEMPLATE, "--canary-label", "random", "--canaries-out", tmp / "model" / "c.jsonl"]
    return _train(data, tmp, *flags), [f"{tmp / 'model' / 'c.jsonl'}: canary secrets must not be written inside"]


def pickled_weights_to_mia(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    model_dir = tmp / "pickled"
    shutil.copytree(FIXTURE_MODEL, model_dir, ignore=shutil.ignore_patterns("model.safetensors"))
    torch.save(load_file(FIXTURE_MODEL / "model.safetensors"), model_dir / "pytorch_model.bin")  # a real pickle
    args = ["mia", model_dir, "--members", MEMBERS, "--non-members", NON_MEMBERS, "--attack", "loss"]
    return args, [f"{model_dir}: weights are pickled", "--allow-pickle"]


def not_a_classifier_to_mia(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    model_dir = tmp / "encoder"
    shutil.copytree(FIXTURE_MODEL, model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}), encoding="utf-8")
    args = ["mia", model_dir, "--members", MEMBERS, "--non-members", NON_MEMBERS, "--attack", "loss"]
    return args, [f"{model_dir / 'config.json'}: the model is not a sequence classifier", "BertModel"]


def epsilon_of_a_model_without_dp(tmp: Path, data: Path) -> tuple[list[object], list[str]]:
    return ["epsilon", FIXTURE_MODEL], [f"{FIXTURE_MODEL}: trained without DP"]


TRAIN_CASES = [
    missing_data_file,
    malformed_jsonl_line,
    empty_data_set,
    unknown_canary_label,
    zero_noise_with_dp,
    existing_out,
    canaries_out_inside_out,
]
OTHER_CASES = [pickled_weights_to_mia, not_a_classifier_to_mia, epsilon_of_a_model_without_dp]


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", TRAIN_CASES + OTHER_CASES, ids=lambda case: case.__name__)
def test_bad_input_exits_2_naming_the_culprit_and_writes_nothing(
    run_cli, tmp_path: Path, tiny_data: Path, case
) -> None:
    args, names = case(tmp_path, tiny_data)
    before = _tree(tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # handled, not escaped
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert all(name in errors[0] for name in names), errors[0]
    assert result.stdout == ""
    assert _tree(tmp_path) == before  # no half-written model, canary file or temporary directory


@pytest.mark.parametrize(
    "case",
    TRAIN_CASES + OTHER_CASES,
    ids=lambda case: case.__name__,
)
def test_bad_input_prints_nothing_but_its_error_line(run_cli, tmp_path: Path, tiny_data: Path, case) -> None:
    result = run_cli(*case(tmp_path, tiny_data)[0])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


# --- --debug, --help, --version ------------------------------------------------------------------------------------------


def test_debug_adds_a_traceback_and_changes_nothing_else(run_cli, tmp_path: Path) -> None:
    args = ("train", tmp_path / "missing.jsonl", "--out", tmp_path / "model")
    plain, debug = run_cli(*args), run_cli("--debug", *args)
    assert plain.exit_code == debug.exit_code == 2  # issue 21: --debug once turned exit 2 into 1
    assert "Traceback (most recent call last):" in debug.stderr and "PrivauditError" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == plain.stderr.strip()  # the same one line, last
    assert not (tmp_path / "model").exists()


def test_debug_keeps_exit_2_for_a_missing_model_dir(run_cli, tmp_path: Path) -> None:
    args = ("mia", tmp_path / "no-model", "--members", MEMBERS, "--non-members", NON_MEMBERS)
    plain, debug = run_cli(*args), run_cli("--debug", *args)
    assert plain.exit_code == debug.exit_code == 2, debug.output
    assert "no such model directory" in plain.stderr and "Traceback" not in plain.stderr
    assert "Traceback (most recent call last):" in debug.stderr


def _console(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "privaudit", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_console_script_traceback_only_with_debug() -> None:
    bad = ["epsilon", "--noise-multiplier", "0", "--sample-rate", "0.1", "--steps", "10", "--delta", "1e-5"]
    plain = _console(*bad)
    assert plain.returncode == 2
    assert plain.stderr == "error: --noise-multiplier must be above 0 (0 gives no privacy at all)\n"
    debug = _console("--debug", *bad)
    assert debug.returncode == 2
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "privaudit.errors.PrivauditError: --noise-multiplier must be above 0 (0 gives no privacy at all)" in (
        debug.stderr
    )
    assert debug.stderr.endswith(plain.stderr)


COMMANDS = [
    ["train"],
    ["epsilon"],
    ["mia"],
    ["canary"],
    ["plant"],
    ["dp-audit"],
    ["attacks"],
    ["baseline", "save"],
    ["sweep"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_help_of_every_command_shows_an_example(run_cli, command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: privaudit {' '.join(command)} " in result.stdout
    # An example is an indented line that runs the command itself.
    example = re.compile(rf"^\s+privaudit {' '.join(command)}(\s|$)", re.MULTILINE)
    assert example.search(result.stdout), result.stdout


def test_help_lists_every_command(run_cli) -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("train", "epsilon", "mia", "attacks", "canary", "plant", "dp-audit", "baseline", "sweep"):
        assert re.search(rf"│ {command}\s", result.stdout), command
    assert "Exit codes: 0 pass, 1 leak over a threshold, 2 the audit could not complete." in result.stdout


def test_version(run_cli) -> None:
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"privaudit {__version__}\n"
    assert __version__ == version("privaudit")


@pytest.mark.parametrize("command", ["mia", "canary", "train", "sweep", "plant"])
def test_help_reads_well_at_80_columns(command):
    from typer.testing import CliRunner

    from privaudit.cli.app import app as cli_app

    result = CliRunner().invoke(cli_app, [command, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    prose = result.output.split("╭")[0]
    # The description and its examples: no line past 80 columns, and no run of spaces inside a line (a backslash
    # continuation in a docstring used to join two example lines with the next line's indentation).
    for line in prose.splitlines():
        assert len(line) <= 80, line
        assert "  " not in line.strip(), line
    if command in ("mia", "canary"):
        assert f"privaudit {command} fixtures/models/intent-tiny \\" in prose
        for panel in ("Data", "Attacks", "Gate", "Output"):
            assert f"─ {panel} ─" in result.output, panel
    if command == "mia":
        assert "─ Reference models ─" in result.output


def test_tpr_note_only_when_some_tpr_is_unsupported():
    from rich.console import Console

    from privaudit.report.table import mia_table

    class _T:
        def __init__(self, supported):
            self.supported, self.fpr, self.tpr, self.low, self.high = supported, 0.01, 0.1, 0.0, 0.2

    class _Value:
        value, low, high = 0.6, 0.55, 0.65

    class _Metrics:
        def __init__(self, supported):
            self.auc, self.tpr_at_fpr, self.advantage, self.epsilon_lower_bound = _Value(), [_T(supported)], 0.1, 0.0

    class _Attack:
        def __init__(self, supported):
            self.name, self.metrics = "loss", _Metrics(supported)

    class _Result:
        def __init__(self, supported):
            self.theoretical_epsilon, self.model, self.n_members, self.n_non_members = None, {"path": "m"}, 5, 5
            self.n_reference_models, self.seed, self.delta, self.attacks = 0, 0, 1e-5, [_Attack(supported)]

    def caption(supported):
        console = Console(width=200, record=True)
        console.print(mia_table(_Result(supported)))
        return console.export_text()

    assert "too few non-members" in " ".join(caption(False).split())
    assert "n/a" not in caption(True)

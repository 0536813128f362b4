"""Tests for privaudit.config: finding, reading and checking [tool.privaudit] and privaudit.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from privaudit.config import find_config, load_config
from privaudit.errors import PrivauditError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_find_config_walks_up_and_prefers_privaudit_toml(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) is None
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')  # no [tool.privaudit]: not a config
    assert find_config(deep) is None
    root = write(tmp_path / "pyproject.toml", "[tool.privaudit.mia]\nseed = 1\n")
    assert find_config(deep) == root.resolve()
    nearer = write(tmp_path / "a" / "pyproject.toml", "[tool.privaudit.mia]\nseed = 2\n")
    assert find_config(deep) == nearer.resolve()
    own = write(tmp_path / "a" / "privaudit.toml", "[mia]\nseed = 3\n")
    assert find_config(deep) == own.resolve()


def test_find_config_defaults_to_the_current_directory(tmp_path, monkeypatch):
    config = write(tmp_path / "privaudit.toml", "")
    monkeypatch.chdir(tmp_path)
    assert find_config() == config.resolve()


def test_pyproject_and_privaudit_toml_read_the_same_keys(tmp_path):
    body = (
        'attack = ["loss", "lira-offline"]\n'
        'members = "data/members.jsonl"\n'
        "non-members = '/abs/non.jsonl'\n"
        "reference_models = 4\n"
        'format = "sarif"\n'
        "epsilon = 8\n"
        "fail_if_bound_exceeds_epsilon = true\n"
        'fail_above = { "auc" = 0.6, "lira-offline:tpr@1%fpr" = 0.05 }\n'
        'max_increase = { "auc" = 0.02 }\n'
        'attack_options = { "rmia:a" = 0.5, "lira-offline:fixed_variance" = false }\n'
    )
    pyproject = load_config(write(tmp_path / "pyproject.toml", "[tool.privaudit.mia]\n" + body), "mia")
    own = load_config(write(tmp_path / "privaudit.toml", "[mia]\n" + body), "mia")
    assert pyproject.defaults == own.defaults
    assert pyproject.defaults == {
        "attack": "loss,lira-offline",
        "members": str(tmp_path / "data" / "members.jsonl"),  # relative to the config file
        "non_members": "/abs/non.jsonl",
        "reference_models": 4,
        "output_format": "sarif",
        "epsilon": 8.0,
        "fail_if_bound_exceeds_epsilon": True,
        "attack_option": ["rmia:a=0.5", "lira-offline:fixed_variance=false"],  # as repeated --attack-option
    }
    assert pyproject.fail_above == own.fail_above == {"auc": 0.6, "lira-offline:tpr@1%fpr": 0.05}
    assert pyproject.max_increase == {"auc": 0.02}
    assert pyproject.section == "tool.privaudit.mia" and own.section == "mia"
    assert pyproject.source == f"{tmp_path / 'pyproject.toml'} tool.privaudit.mia"


def test_dp_audit_keys_for_data_canaries_and_the_estimate_gate(tmp_path):
    body = 'base = "models/base"\ncanary_kind = "data"\nfail_if_estimate_exceeds_epsilon = true\n'
    config = load_config(write(tmp_path / "pyproject.toml", "[tool.privaudit.dp-audit]\n" + body), "dp_audit")
    assert config.defaults == {
        "base": str(tmp_path / "models" / "base"),
        "canary_kind": "data",
        "fail_if_estimate_exceeds_epsilon": True,
    }
    bad = write(tmp_path / "privaudit.toml", "[dp-audit]\nfail_if_estimate_exceeds_epsilon = 'yes'\n")
    with pytest.raises(PrivauditError, match=r"fail_if_estimate_exceeds_epsilon: expected true or false"):
        load_config(bad, "dp_audit")


def test_a_file_without_the_commands_table_is_empty(tmp_path):
    config = load_config(write(tmp_path / "pyproject.toml", "[tool.ruff]\nline-length = 120\n"), "mia")
    assert (config.defaults, config.fail_above, config.max_increase) == ({}, {}, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[tool.privaudit.mia]\nattacks = 'loss'\n",
            r"unknown key tool.privaudit.mia.attacks; valid keys: attack,",
        ),
        ("[tool.privaudit.mia]\nallow_pickle = true\n", r"unknown key tool.privaudit.mia.allow_pickle"),
        (
            "[tool.privaudit.mai]\nseed = 1\n",
            r"unknown key tool.privaudit.mai; privaudit reads the tables tool.privaudit.mia",
        ),
        ("[tool.privaudit]\nmia = 3\n", r"tool.privaudit.mia must be a table"),
        ("[tool.privaudit.mia]\nseed = 'zero'\n", r": tool.privaudit.mia.seed: expected an integer"),
        ("[tool.privaudit.mia]\nseed = true\n", r"seed: expected an integer"),
        ("[tool.privaudit.mia]\nreference_models = -1\n", r"reference_models: expected an integer >= 0"),
        ("[tool.privaudit.mia]\nepsilon = 'eight'\n", r"epsilon: expected a number"),
        (
            "[tool.privaudit.mia]\nformat = 'xml'\n",
            r"format: expected one of table, json, junit, sarif, github, markdown",
        ),
        ("[tool.privaudit.mia]\nfail_if_bound_exceeds_epsilon = 'yes'\n", r"expected true or false"),
        ("[tool.privaudit.mia]\nfail_above = 0.6\n", r"fail_above: expected a table"),
        ("[tool.privaudit.mia]\nfail_above = { auc = 'high' }\n", r"fail_above: 'auc' must be a number"),
        ("[tool.privaudit.mia]\nattack = []\n", r"attack: expected a string or a non-empty list"),
        ("[tool.privaudit.mia]\nmembers = 3\n", r"members: expected a path"),
        ("[tool.privaudit.mia]\nfail_above = {}\nfail-above = {}\n", r"tool.privaudit.mia.fail-above is given twice"),
        ("[tool.privaudit.mia\n", r"not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path / "pyproject.toml", text)
    with pytest.raises(PrivauditError, match=message) as err:
        load_config(path, "mia")
    assert str(err.value).startswith(f"{path}: ")


def test_privaudit_toml_errors_use_its_own_spelling(tmp_path):
    path = write(tmp_path / "privaudit.toml", "[mia]\nsede = 1\n")
    with pytest.raises(PrivauditError, match=r"unknown key mia.sede;"):
        load_config(path, "mia")
    path = write(tmp_path / "privaudit.toml", "seed = 1\n")
    with pytest.raises(PrivauditError, match=r"unknown key seed; privaudit reads the tables mia"):
        load_config(path, "mia")

"""The family matrix: every supported family through load, mia, canary, train --base and dp-audit.

Each family's tiny classifier (``tiny_families.py``) is trained once per module with planted canaries; each cell
checks that privaudit's logits for what it loads are the model's own (the load self-check, and an explicit comparison
on the training texts).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CANARY_TEMPLATE, make_records, write_jsonl
from tiny_families import FAMILIES, build
from typer.testing import CliRunner

from privaudit.families import adapter_for
from privaudit.families.selfcheck import own_logits
from privaudit.target import Target

TRAIN = ("--epochs", 2, "--batch-size", 16, "--max-length", 32, "--lr", 5e-3, "--seed", 0)
runner = CliRunner()


def invoke(*args: object):
    from privaudit.cli.app import app

    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def json_of(result) -> dict:
    return json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])


def assert_own_function(model_dir: Path, texts: list[str]) -> None:
    """privaudit's batched, padded logits for ``texts`` equal the model's own unpadded forward."""
    target = Target.load(model_dir)  # runs the load self-check
    mine = target.logits(texts, batch_size=8)
    own = own_logits(target.model, target.tokenizer, texts, max_length=target.max_length)
    assert np.max(np.abs(mine - own)) < 1e-4


@pytest.fixture(scope="module", params=FAMILIES, ids=[f.name for f in FAMILIES])
def family_base(request, tmp_path_factory: pytest.TempPathFactory):
    family = request.param
    return family, build(family, tmp_path_factory.mktemp(family.name) / "base")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family-data")
    seen: set[str] = set()
    splits = {}
    for name, seed in (("members", 1), ("non_members", 2), ("population", 3)):
        records = [r for r in make_records(200, seed=seed) if r["text"] not in seen]
        records = list({r["text"]: r for r in records}.values())[:48]  # disjoint splits, no repeated text
        seen.update(r["text"] for r in records)
        splits[name] = write_jsonl(root / f"{name}.jsonl", records)
    return splits


@pytest.fixture(scope="module")
def trained(family_base, data, tmp_path_factory: pytest.TempPathFactory):
    """``privaudit train --base`` the family's classifier, with planted canaries; (family, model dir, canary file)."""
    family, base = family_base
    root = tmp_path_factory.mktemp(f"{family.name}-trained")
    out, canaries = root / "model", root / "model.canaries.jsonl"
    result = invoke(
        "train", data["members"], "--base", base, "--out", out, *TRAIN, "--canary", CANARY_TEMPLATE,
        "--canary-label", "random", "--canary-count", 2, "--canary-repeats", 3, "--canaries-out", canaries,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return family, out, canaries, result.stdout


def member_texts(data) -> list[str]:
    return [json.loads(line)["text"] for line in data["members"].read_text().splitlines()][:24]


def test_base_loads_and_is_its_own_function(family_base, data) -> None:
    _, base = family_base
    assert_own_function(base, member_texts(data))


def test_trained_model_is_its_own_function_and_keeps_the_head(trained, data) -> None:
    family, out, _, stdout = trained
    assert_own_function(out, member_texts(data))
    assert "new head" not in stdout  # the base classifies the same labels: its head is kept
    if family.decoder:  # the tokenizer had no pad token: one was chosen, said so, and recorded
        assert "has no pad token" in stdout
        config = json.loads((out / "config.json").read_text())
        assert config["pad_token_id"] is not None


# Reference-model attacks train two models a family; three families of distinct shapes (an encoder with token types,
# one with disentangled attention, a decoder without a pad token) run them, and every family runs the attacks that
# score its own logits alone. Training any family from a base is covered cell by cell by the train variants below.
REFERENCE_FAMILIES = ("bert", "deberta-v2", "llama")


def test_mia(trained, data) -> None:
    family, out, _, _ = trained
    attacks = ("loss", "lira-offline", "rmia") if family.name in REFERENCE_FAMILIES else ("loss", "confidence", "gap")
    result = invoke(
        "mia", out, "--members", data["members"], "--non-members", data["non_members"],
        "--population", data["population"], "-a", ",".join(attacks), "--reference-models", 2, "-f", "json",
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    text = result.stdout
    for attack in attacks:
        assert f'"{attack}"' in text


def test_canary_exposure_and_modiva(trained) -> None:
    _, out, canaries, _ = trained
    result = invoke("canary", out, "-c", canaries, "--sample", 200, "--steps", 5, "--restarts", 2, "-f", "json")
    assert result.exit_code in (0, 1), result.output
    planted = json_of(result)["canaries"]
    assert planted and all(np.isfinite(c["exposure"]) and c["extraction"]["guess"] for c in planted)


@pytest.mark.parametrize(
    "flags",
    [
        ("--dp", "--noise-multiplier", 1.0, "--delta", 1e-3),
        ("--train-layers", "head"),
        ("--lora-rank", 2),
    ],
    ids=["dp-bookkeeping", "head", "lora"],
)
def test_train_variants_are_their_own_function(family_base, data, tmp_path: Path, flags) -> None:
    family, base = family_base
    out = tmp_path / "model"
    result = invoke("train", data["members"], "--base", base, "--out", out, *TRAIN, *flags)
    assert result.exit_code == 0, result.output
    recipe = json.loads((out / "privaudit.json").read_text())
    if "--dp" in flags:
        assert recipe["dp"]["grad_sample_mode"] == "bk"
    if "--lora-rank" in flags:
        # The family's attention projections (GPT-2: c_attn, a Conv1D), recorded for the reference models.
        assert tuple(recipe["recipe"]["lora_targets"]) == adapter_for(family.name).lora_targets
        assert any("lora" in name for name in recipe["trainable"]["tensors"])
    assert_own_function(out, member_texts(data))


def test_dp_audit_with_gradient_canaries(family_base, data, tmp_path: Path) -> None:
    _, base = family_base
    out, canaries = tmp_path / "model", tmp_path / "model.canaries.jsonl"
    result = invoke(
        "train", data["members"], "--base", base, "--out", out, *TRAIN, "--dp", "--noise-multiplier", 1.0,
        "--delta", 1e-3, "--gradient-canaries", 64, "--canaries-out", canaries,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("dp-audit", out, "-c", canaries, "--canary-kind", "gradient", "-f", "json")
    assert result.exit_code in (0, 1), result.output
    document = json_of(result)
    assert document["source"] == "gradient-canaries" and document["m"] == 64

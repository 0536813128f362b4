"""Data canaries end to end: ``privaudit plant``, training by an outside pipeline, ``privaudit dp-audit --base``.

The models are trained by :mod:`outside.pipeline` (plain transformers and Opacus, as a user would), never by privaudit's
trainer, from a small generated base whose vocabulary is wider than the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from conftest import make_records, write_jsonl
from outside.pipeline import BaseShape, make_base, rdp_epsilon, train_classifier

from privaudit.stats.accounting import noise_multiplier_for_epsilon
from privaudit.stats.auditor import Bonferroni, CanaryScoreAuditor, reach

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schema-dp-audit.json").read_text(encoding="utf-8"))
SHAPE = BaseShape(hidden_size=32, intermediate_size=64)
STEPS, RATE, MAX_LENGTH = 40, 0.2, 16


def texts_of(records):
    return [r["text"] for r in records]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """600 rows, 60 data canaries (4 tokens each), and three models trained from the base by the outside loop."""
    root = tmp_path_factory.mktemp("data_canaries")
    records = make_records(600, seed=7)
    data = write_jsonl(root / "train.jsonl", records)
    base = make_base(root / "base", texts_of(records), extra_words=400, shape=SHAPE)
    from privaudit.canary.plant import plant

    planted = plant(data, base=base, count=60, out=root / "planted", seed=0)
    common = dict(sample_rate=RATE, steps=STEPS, max_length=MAX_LENGTH, lr=1e-2, seed=0)
    nm = noise_multiplier_for_epsilon(target_epsilon=8.0, sample_rate=RATE, steps=STEPS, delta=1e-5)
    models = {
        "no-dp": train_classifier(base, planted.data, root / "no-dp", noise_multiplier=None, **common),
        "dp": train_classifier(base, planted.data, root / "dp", noise_multiplier=nm, **common),
        "frozen": train_classifier(
            base, planted.data, root / "frozen", noise_multiplier=None, freeze_embeddings=True, **common
        ),
    }
    return {"root": root, "base": base, "planted": planted, "records": records, "nm": nm, "models": models}


def audit(run_cli, world, model: str, *args: object):
    return run_cli("dp-audit", world["root"] / model, "-c", world["planted"].secret, *args)


def report(result) -> dict:
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    return document


def one_line_error(result, *, contains: str) -> None:
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error:"), result.stderr
    assert contains in line, line
    assert "Traceback" not in result.output


def test_without_dp_the_white_box_score_catches_the_canaries(run_cli, world):
    result = audit(
        run_cli, world, "no-dp", "--base", world["base"], "--epsilon", "0.5", "--fail-if-bound-exceeds-epsilon",
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    doc = report(result)
    assert doc["source"] == "data-canaries" and doc["score"] == "embedding-movement"
    assert doc["model"]["base"] == str(world["base"])
    assert doc["m"] == 60 and doc["n_in"] == world["planted"].inserted
    # The most 60 canaries can prove is what a perfect separation gives (about 2 with 30 in): reach most of it.
    inserted = np.arange(60) < doc["n_in"]
    ceiling = CanaryScoreAuditor.from_inclusion(inserted.astype(float), inserted).audit(0.05, 1e-5, Bonferroni())
    assert doc["bounds"]["eps_delta"]["epsilon"] >= 0.8 * ceiling.eps_delta.epsilon > 1.2, doc["bounds"]


def test_without_base_the_black_box_loss_is_used(run_cli, world):
    result = audit(run_cli, world, "no-dp", "--epsilon", "8", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = report(result)
    assert doc["score"] == "loss" and "base" not in doc["model"]
    assert doc["bounds"]["eps_delta"]["epsilon"] > 0.3, doc["bounds"]


def test_table_names_the_score(run_cli, world):
    result = audit(run_cli, world, "no-dp", "--base", world["base"], "--epsilon", "8")
    assert result.exit_code == 0, result.output
    assert "data-canaries, score: embedding-movement" in result.stdout


@pytest.mark.parametrize("white_box", [True, False])
def test_honest_dp_at_epsilon_8_stays_below_the_claim(run_cli, world, white_box):
    claimed = rdp_epsilon(noise_multiplier=world["nm"], sample_rate=RATE, steps=STEPS, delta=1e-5)
    assert claimed == pytest.approx(8.0, abs=0.05)
    base = ("--base", world["base"]) if white_box else ()
    result = audit(
        run_cli, world, "dp", *base, "--epsilon", f"{claimed}", "--fail-if-bound-exceeds-epsilon", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert report(result)["bounds"]["eps_delta"]["epsilon"] <= claimed


def test_frozen_embeddings_refuse_the_white_box_score(run_cli, world, tmp_path):
    out = tmp_path / "report.json"
    result = audit(run_cli, world, "frozen", "--base", world["base"], "--epsilon", "8", "--json-out", out)
    one_line_error(result, contains="frozen in training, so the white-box score is impossible; drop --base")
    assert not out.exists()


def test_a_base_of_another_size_is_refused(run_cli, world, tmp_path):
    texts = texts_of(world["records"])
    wider = make_base(tmp_path / "wider", texts, extra_words=400, shape=BaseShape(hidden_size=48, intermediate_size=64))
    one_line_error(audit(run_cli, world, "no-dp", "--base", wider), contains="hidden_size 48")
    other_vocab = make_base(tmp_path / "vocab", texts, extra_words=300, shape=SHAPE)
    one_line_error(audit(run_cli, world, "no-dp", "--base", other_vocab), contains="vocab_size")


def test_a_base_the_model_did_not_start_from_is_refused(run_cli, world, tmp_path):
    other = make_base(tmp_path / "other", texts_of(world["records"]), extra_words=400, shape=SHAPE, seed=1)
    one_line_error(audit(run_cli, world, "no-dp", "--base", other), contains="unrelated to the base's")


def test_a_secret_file_of_another_vocabulary_is_refused(run_cli, world, tmp_path):
    lines = world["planted"].secret.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    out_of_range = tmp_path / "range.jsonl"
    out_of_range.write_text(
        "\n".join([json.dumps({**first, "token_ids": [10**6, *first["token_ids"][1:]]}), *lines[1:]]), encoding="utf-8"
    )
    result = run_cli("dp-audit", world["root"] / "no-dp", "-c", out_of_range, "--base", world["base"])
    one_line_error(result, contains="owns token ids outside the vocabulary")
    respelled = tmp_path / "spelled.jsonl"
    respelled.write_text(
        "\n".join([json.dumps({**first, "tokens": ["zz"] * len(first["tokens"])}), *lines[1:]]), encoding="utf-8"
    )
    result = run_cli("dp-audit", world["root"] / "no-dp", "-c", respelled)
    one_line_error(result, contains="tokens are spelled differently")


def test_base_with_other_canaries_is_refused(run_cli, world, tmp_path):
    result = run_cli("dp-audit", world["root"] / "no-dp", "--scores", world["planted"].secret, "--base", world["base"])
    assert result.exit_code == 2


def test_plant_cli_writes_and_warns(run_cli, world, tmp_path):
    out = tmp_path / "planted"
    result = run_cli("plant", world["root"] / "train.jsonl", "--base", world["base"], "--count", "10", "--out", out)
    assert result.exit_code == 0, result.output
    assert "planted" in result.stdout and (out / "train.jsonl").is_file()
    secret = [json.loads(line) for line in (out / "secret" / "canaries.jsonl").read_text().splitlines()]
    n_in = sum(c["inserted"] for c in secret)
    assert f"these 10 canaries can show at most ε {reach(n_in, 10 - n_in, 0.05, 1e-5):.2f}" in result.stdout
    assert "never give it" in result.stderr and str(out / "secret" / "canaries.jsonl") in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--count", "61"), "more than 10% of the 600 rows"),
        (("--count", "300", "--force"), "room for 213 canaries of 2 tokens"),
        (("--count", "5", "--base", "missing-base"), "no such base model directory"),
    ],
)
def test_plant_cli_refusals_write_nothing(run_cli, world, tmp_path, args, message):
    base = () if "--base" in args else ("--base", world["base"])
    result = run_cli("plant", world["root"] / "train.jsonl", *base, "--out", tmp_path / "out", *args)
    one_line_error(result, contains=message)
    assert list(tmp_path.iterdir()) == []


def test_plant_cli_refuses_an_existing_output(run_cli, world, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine", encoding="utf-8")
    args = ("plant", world["root"] / "train.jsonl", "--base", world["base"], "--count", "5", "--out", tmp_path / "out")
    one_line_error(run_cli(*args), contains="the output already exists")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]

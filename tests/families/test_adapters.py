"""The adapter registry, the load self-check failing where it must, sharded checkpoints and --base heads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_MODEL, LABELS, make_records, write_jsonl
from tiny_families import FAMILIES, build
from typer.testing import CliRunner

from privaudit.errors import PrivauditError
from privaudit.families import ADAPTERS, GENERIC, FamilyAdapter, adapter_for, register
from privaudit.target import Target
from privaudit.training import job as trainjob
from privaudit.training.head import output_layer

runner = CliRunner()
GPT2 = next(f for f in FAMILIES if f.name == "gpt2")


def invoke(*args: object):
    from privaudit.cli.app import app

    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_registry_is_one_table_keyed_by_model_type() -> None:
    assert adapter_for("gpt2").lora_targets == ("c_attn",) and adapter_for("gpt2").pooling == "last"
    assert adapter_for("xlm-roberta") is adapter_for("roberta")
    assert adapter_for("deberta-v2").lora_targets == ("query_proj", "value_proj")
    assert adapter_for("no-such-family") is GENERIC and not GENERIC.known
    with pytest.raises(PrivauditError, match="names them|name them"):
        GENERIC.default_lora_targets()
    mine = FamilyAdapter("privaudit BiLSTM", ("privaudit-bilstm-test",), lora_targets=("proj",))
    register(mine)
    try:
        assert adapter_for("privaudit-bilstm-test") is mine
        with pytest.raises(PrivauditError, match="already has"):
            register(FamilyAdapter("other", ("privaudit-bilstm-test",)))
    finally:
        del ADAPTERS["privaudit-bilstm-test"]


def _gpt2_ending_in_its_pad_token(root: Path) -> Path:
    # A GPT-2 without a pad token whose tokenizer appends <|endoftext|> to every text, as some decoders' do: the model
    # itself pools that last token; padded with <|endoftext|>, the head would pool the token before it.
    from tokenizers import processors
    from transformers import AutoTokenizer

    base = build(GPT2, root / "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    eos = tokenizer.eos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", eos)]
    )
    tokenizer.save_pretrained(base)
    return base


def test_self_check_refuses_a_decoder_whose_padding_would_change_its_function(tmp_path: Path) -> None:
    base = _gpt2_ending_in_its_pad_token(tmp_path)
    data = FIXTURE_MODEL.parent.parent / "data"
    result = invoke("mia", base, "--members", data / "members.jsonl", "--non-members", data / "non_members.jsonl")
    assert result.exit_code == 2, result.output
    assert "self-check failed" in result.stderr and "GPT-2" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_family_is_named_when_the_self_check_fails(tmp_path: Path, monkeypatch) -> None:
    base = _gpt2_ending_in_its_pad_token(tmp_path)
    unknown = FamilyAdapter("GPT-2 (as unknown)", ("gpt2",), pooling="last", known=False)
    monkeypatch.setitem(ADAPTERS, "gpt2", unknown)
    with pytest.raises(PrivauditError, match="model_type 'gpt2', which privaudit has no adapter for"):
        Target.load(base)


def test_a_gpt2_without_a_pad_token_scores_its_own_function(tmp_path: Path) -> None:
    base = build(GPT2, tmp_path / "gpt2")
    assert json.loads((base / "config.json").read_text()).get("pad_token_id") is None
    target = Target.load(base)  # chooses <|endoftext|> in memory; the self-check compares with the model as given
    assert target.model.config.pad_token_id == target.tokenizer.eos_token_id


def test_sharded_checkpoint_gives_the_same_mia_json(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    sharded = tmp_path / "sharded"
    shutil.copytree(FIXTURE_MODEL, sharded)
    (sharded / "model.safetensors").unlink()
    model = AutoModelForSequenceClassification.from_pretrained(FIXTURE_MODEL)
    model.save_pretrained(sharded, safe_serialization=True, max_shard_size="100KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (sharded / "model.safetensors.index.json").is_file()
    data = FIXTURE_MODEL.parent.parent / "data"
    flags = ("--members", data / "members.jsonl", "--non-members", data / "non_members.jsonl", "-f", "json")
    one, many = invoke("mia", FIXTURE_MODEL, *flags), invoke("mia", sharded, *flags)
    assert one.exit_code in (0, 1) and many.exit_code == one.exit_code, many.output

    def strip(text: str) -> dict:
        document = json.loads(text[text.index("{") : text.rindex("}") + 1])
        document.pop("model", None)  # its path and fingerprint name the directory
        return document

    assert json.dumps(strip(one.stdout), sort_keys=True, default=str).replace(str(FIXTURE_MODEL), "M") == json.dumps(
        strip(many.stdout), sort_keys=True, default=str
    ).replace(str(sharded), "M")


@pytest.mark.parametrize("problem", ["missing", "symlink-out", "not-safetensors"])
def test_every_shard_is_checked(tmp_path: Path, problem: str) -> None:
    from transformers import AutoModelForSequenceClassification

    sharded = tmp_path / "sharded"
    shutil.copytree(FIXTURE_MODEL, sharded)
    (sharded / "model.safetensors").unlink()
    AutoModelForSequenceClassification.from_pretrained(FIXTURE_MODEL).save_pretrained(
        sharded, safe_serialization=True, max_shard_size="100KB"
    )
    shard = sorted(sharded.glob("model-*.safetensors"))[-1]
    if problem == "missing":
        shard.unlink()
    elif problem == "symlink-out":
        outside = tmp_path / "outside.safetensors"
        shutil.move(shard, outside)
        shard.symlink_to(outside)
    else:
        shard.write_bytes(b"\x80\x04pickle")
    with pytest.raises(
        PrivauditError,
        match={"missing": "missing", "symlink-out": "symlink|symbolic link", "not-safetensors": "not a safetensors"}[
            problem
        ],
    ):
        Target.load(sharded)


def test_base_head_is_kept_for_the_same_labels_and_replaced_with_a_line_otherwise(tmp_path: Path) -> None:
    bert = next(f for f in FAMILIES if f.name == "bert")
    base = build(bert, tmp_path / "bert")
    same = write_jsonl(tmp_path / "same.jsonl", make_records(30))
    # --lr 0: the trained model is the base; with the head kept (rows in the data's label order), so are its logits.
    result = invoke("train", same, "--base", base, "--out", tmp_path / "kept", "--lr", 0, "--epochs", 1)
    assert result.exit_code == 0 and "new head" not in result.stdout
    texts = [r["text"] for r in make_records(10)]
    base_target, kept = Target.load(base), Target.load(tmp_path / "kept")
    order = [base_target.label2id[name] for name in kept.id2label.values()]
    assert (abs(kept.logits(texts) - base_target.logits(texts)[:, order]) < 1e-6).all()
    other = write_jsonl(
        tmp_path / "other.jsonl", [{"text": r["text"], "label": r["label"].upper()} for r in make_records(30)]
    )
    job = trainjob.TrainJob(data=other, out=tmp_path / "new", base=base, lr=0.0, epochs=1)
    summary = trainjob.run_train(job)
    assert "a new head is initialised" in summary["note"]
    drawn = Target.load(tmp_path / "new")  # lr 0: the weights as initialised
    assert not np.allclose(
        output_layer(drawn.model, 3).weight.detach().numpy(),
        output_layer(base_target.model, 3).weight.detach().numpy(),
    )
    assert sorted(LABELS) == sorted(base_target.label2id)

"""What trains (``privaudit/training/layers.py``): --train-layers, LoRA through peft, and book-keeping on both.

The gradient test mirrors tests/training/test_bookkeeping.py: a one-layer BERT of width 32 without dropout, its
book-kept clipped gradient against per-example autograd, here with LoRA adapters on query and value and only the
adapters and the head trainable.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LABELS, TINY_ARCH, make_records, write_jsonl
from test_bookkeeping import batch, explicit_per_sample_grads, per_sample_loss, tiny_bert

from privaudit.errors import PrivauditError
from privaudit.target import Target
from privaudit.training.bookkeeping import BookKeepingDP
from privaudit.training.layers import (
    LayerSpec,
    apply_lora,
    freeze_for,
    merge_lora,
    parse_train_layers,
    trainable_names,
    transformer_layers,
)
from privaudit.training.train import DPConfig, TrainConfig, train_classifier

HEAD = ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]


@pytest.mark.parametrize(
    ("spec", "parsed"), [("all", LayerSpec("all")), ("HEAD", LayerSpec("head")), ("last:2", LayerSpec("last", 2))]
)
def test_train_layers_parse(spec: str, parsed: LayerSpec) -> None:
    assert parse_train_layers(spec) == parsed


@pytest.mark.parametrize("spec", ["", "last", "last:0", "last:-1", "last:x", "first:2", "heads"])
def test_bad_train_layers_are_refused(spec: str) -> None:
    with pytest.raises(PrivauditError, match="is not all, head or last:N"):
        parse_train_layers(spec)


def test_head_trains_the_classifier_and_pooler_only() -> None:
    model = tiny_bert()
    freeze_for(model, LayerSpec("head"))
    assert trainable_names(model) == HEAD


def test_last_n_trains_the_last_layers_and_the_head() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(
        BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    )
    assert transformer_layers(model) == ("bert.encoder.layer", 3)
    freeze_for(model, LayerSpec("last", 2))
    names = trainable_names(model)
    assert {n.split(".")[3] for n in names if n.startswith("bert.encoder.layer.")} == {"1", "2"}
    assert set(HEAD) <= set(names)
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in names)
    with pytest.raises(PrivauditError, match=r"last:5: the model has 3 transformer layers"):
        freeze_for(model, LayerSpec("last", 5))


def lora_bert() -> torch.nn.Module:
    """The tiny BERT with rank-2 LoRA on query and value, B drawn at random (peft starts it at zero)."""
    model = apply_lora(tiny_bert(), rank=2, alpha=4.0, targets=("query", "value"))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_lora_trains_the_adapters_and_the_head() -> None:
    names = trainable_names(lora_bert())
    adapters = [n for n in names if "lora_" in n]
    assert len(adapters) == 4 and all(".query." in n or ".value." in n for n in adapters)
    assert sorted(set(names) - set(adapters)) == sorted(HEAD)


@pytest.mark.parametrize("max_grad_norm", [0.05, 1e6], ids=["clipped", "unclipped"])
def test_book_keeping_on_lora_equals_per_example_autograd(max_grad_norm: float) -> None:
    data = batch(attended_pad=True)
    model = lora_bert()
    reference = copy.deepcopy(model)
    engine = BookKeepingDP(
        model,
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        expected_batch_size=len(data[2]),
        generator=torch.Generator().manual_seed(0),
    )
    # Only the adapters and the head are hooked: the frozen base Linear layers inside peft's LoRA layers are not.
    assert all(type(m) is torch.nn.Linear for m in engine.layers)
    assert {name.rpartition(".")[2] for name in engine.layers.values()} <= {"default", "dense", "classifier"}
    engine.step_gradients(per_sample_loss(model, *data))
    engine.detach()
    ours = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    explicit = explicit_per_sample_grads(reference, data)
    assert ours.keys() == explicit[0].keys()
    norms = torch.stack([sum(g.double().square().sum() for g in grads.values()).sqrt() for grads in explicit])
    torch.testing.assert_close(engine.per_sample_norms_.double(), norms, rtol=1e-5, atol=1e-7)
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    for name, grad in ours.items():
        expected = sum(f * grads[name].double() for f, grads in zip(factors, explicit)) / len(explicit)
        # Within 1e-5 of the gradient's largest entry: float32 sums in a different order (as test_bookkeeping.py).
        error = float((grad.double() - expected).abs().max())
        assert error <= 1e-5 * float(expected.abs().max()), f"{name}: max error {error:.3g}"
    if max_grad_norm < 1:
        assert (norms > max_grad_norm).all()  # every example clipped: not a comparison of plain gradients
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_lora_merges_into_a_plain_classifier() -> None:
    model = lora_bert().eval()
    ids, mask, _ = batch()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        merged = merge_lora(model)
        after = merged(input_ids=ids, attention_mask=mask).logits
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-6)


def test_lora_on_layers_the_model_lacks_is_refused() -> None:
    with pytest.raises(PrivauditError, match="has no Linear layer named q_proj for peft to target"):
        apply_lora(tiny_bert(), rank=2, alpha=None, targets=("q_proj",))
    with pytest.raises(PrivauditError, match="--lora-rank must be at least 1"):
        apply_lora(tiny_bert(), rank=0, alpha=None, targets=("query",))


@pytest.mark.parametrize("what", [{"train_layers": "head"}, {"train_layers": "last:1"}, {"lora_rank": 2}])
@pytest.mark.parametrize("mode", ["bk", "ghost"])
def test_dp_training_clips_and_noises_only_the_trained_parameters(what: dict, mode: str) -> None:
    records = make_records(48)
    config = TrainConfig(epochs=1, batch_size=16, max_length=16, architecture=TINY_ARCH, **what)
    torch.manual_seed(0)
    trained = train_classifier(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=config,
        dp=DPConfig(delta=1e-3, noise_multiplier=1.0, grad_sample_mode=mode),
    )
    assert trained.dp["grad_sample_mode"] == mode
    # The frozen embeddings are the ones a fresh build with the same seed starts from: no noise reached them.
    from privaudit.training.model import build_model

    torch.manual_seed(config.seed)
    fresh, _, _ = build_model(config, list(LABELS), [r["text"] for r in records], trained.tokenizer)
    same = torch.equal(
        fresh.bert.embeddings.word_embeddings.weight, trained.model.bert.embeddings.word_embeddings.weight
    )
    assert same
    assert type(trained.model).__name__ == "BertForSequenceClassification"
    assert 0 < trained.n_parameters < sum(p.numel() for p in fresh.parameters())


def _train(run_cli, tmp_path: Path, *flags: object):
    data = write_jsonl(tmp_path / "train.jsonl", make_records(60))
    return run_cli("train", data, "--out", tmp_path / "model", "--epochs", 1, "--max-length", 16, *flags)


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (("--train-layers", "last:5"), "--train-layers last:5: the model has 1 transformer layers"),
        (("--train-layers", "top"), "--train-layers 'top' is not all, head or last:N"),
        (("--lora-rank", 2, "--lora-targets", "q_proj,v_proj"), "no Linear layer named q_proj or v_proj"),
        (("--lora-rank", 2, "--train-layers", "head"), "give --train-layers or --lora-rank, not both"),
    ],
)
def test_cli_refuses_what_the_model_cannot_train(run_cli, tmp_path, tiny_arch, flags, complaint) -> None:
    result = _train(run_cli, tmp_path, *flags)
    assert result.exit_code == 2, result.output
    assert complaint in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_recipe_records_what_trained_and_reference_models_train_the_same(run_cli, tmp_path, tiny_arch) -> None:
    from privaudit.training.reference import reference_signals

    result = _train(run_cli, tmp_path, "--lora-rank", 2, "--dp", "--noise-multiplier", 1.0, "--delta", 1e-3)
    assert result.exit_code == 0, result.output
    recipe = json.loads((tmp_path / "model" / "privaudit.json").read_text())
    assert recipe["recipe"]["lora_rank"] == 2 and recipe["recipe"]["lora_targets"] == ["query", "value"]
    tensors = recipe["trainable"]["tensors"]
    assert sorted(t for t in tensors if "lora_" not in t) == sorted(HEAD)
    target = Target.load(tmp_path / "model")  # a plain safetensors classifier: no peft needed to load it
    assert not any("lora" in name for name, _ in target.model.named_parameters())
    population = make_records(60, seed=5)
    audited = make_records(20, seed=6)
    label_ids = lambda rs: np.array([target.label2id[r["label"]] for r in rs])  # noqa: E731
    reference_signals(
        target,
        audited_texts=[r["text"] for r in audited],
        audited_labels=label_ids(audited),
        population_texts=[r["text"] for r in population],
        population_labels=label_ids(population),
        n_models=1,
        online=False,
        seed=0,
        cache_dir=tmp_path / "cache",
    )
    (reference,) = (tmp_path / "cache").glob("*/*/model-0/privaudit.json")
    ref = json.loads(reference.read_text())
    assert ref["trainable"]["tensors"] == tensors
    assert ref["recipe"]["lora_rank"] == 2 and ref["dp"]["noise_multiplier"] == recipe["dp"]["noise_multiplier"]

"""DP-SGD on shared weights: ALBERT with two layers runs its one shared layer twice a step.

Book-keeping sums each example's gradient over both runs before the norm; checked against plain autograd one example
at a time. Opacus's ghost clipping cannot, and says so in one line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LABELS, make_records
from tiny_families import FAMILIES, build
from torch import nn

from privaudit.errors import PrivauditError
from privaudit.training.bookkeeping import BookKeepingDP
from privaudit.training.train import DPConfig, TrainConfig, _forward, train_classifier

ALBERT = next(f for f in FAMILIES if f.name == "albert")
ALBERT_2 = replace(ALBERT, kwargs={**ALBERT.kwargs, "num_hidden_layers": 2})


def albert_two_layers() -> nn.Module:
    from transformers import AlbertConfig, AlbertForSequenceClassification

    torch.manual_seed(0)
    config = AlbertConfig(
        vocab_size=40, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0, pad_token_id=0, num_labels=3, initializer_range=0.5,
    )  # fmt: skip
    return AlbertForSequenceClassification(config).train()


@pytest.mark.parametrize("clip", [0.01, 1e4], ids=["clipped", "unclipped"])
def test_bookkeeping_sums_a_shared_layers_runs_per_example(clip: float) -> None:
    model = albert_two_layers()
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 5, 7, 3])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 40, (4, 9), generator=g) * mask
    labels = torch.tensor([0, 1, 2, 0])
    # Plain autograd, one example at a time (same width, so positions and padding match): the whole gradient.
    params = dict(model.named_parameters())
    expected = {name: torch.zeros_like(p) for name, p in params.items()}
    norms = []
    for i in range(4):
        loss = nn.functional.cross_entropy(_forward(model, ids[i : i + 1], mask[i : i + 1]), labels[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params.values(), grads)]
        norm = torch.sqrt(sum(gr.double().square().sum() for gr in grads))
        norms.append(float(norm))
        for name, gr in zip(params, grads):
            expected[name] += min(1.0, clip / (float(norm) + 1e-6)) * gr / 4
    engine = BookKeepingDP(
        model, noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=4, generator=torch.Generator()
    )
    assert engine.tied == set()  # not tied tensors: one layer run twice
    engine.step_gradients(nn.functional.cross_entropy(_forward(model, ids, mask), labels, reduction="none"))
    engine.detach()
    np.testing.assert_allclose(engine.per_sample_norms_.numpy(), norms, rtol=1e-4)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6)  # float32 sums


def test_ghost_clipping_refuses_shared_weights_in_one_line_and_bookkeeping_trains(tmp_path: Path) -> None:
    base = build(ALBERT_2, tmp_path / "albert2")
    records = make_records(32)
    kwargs = dict(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=TrainConfig(epochs=1, batch_size=16, max_length=24, base=str(base)),
    )
    with pytest.raises(PrivauditError, match="ghost clipping does not support tied or shared weights.*'bk'"):
        train_classifier(**kwargs, dp=DPConfig(delta=1e-3, noise_multiplier=1.0, grad_sample_mode="ghost"))
    trained = train_classifier(**kwargs, dp=DPConfig(delta=1e-3, noise_multiplier=1.0))
    assert trained.dp["grad_sample_mode"] == "bk"


def test_deberta_relative_positions_are_refused_with_the_fix_and_train_frozen(tmp_path: Path) -> None:
    # DeBERTa with relative attention projects its relative-position table once for the whole batch: no example's
    # own gradient exists for that projection. Refused in one line; with it frozen (head only) DP-SGD trains.
    deberta = next(f for f in FAMILIES if f.name == "deberta-v2")
    relative = {"relative_attention": True, "position_biased_input": False, "pos_att_type": ["p2c", "c2p"]}
    base = build(replace(deberta, kwargs={**deberta.kwargs, **relative}), tmp_path / "deberta")
    records = make_records(32)
    data = dict(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        dp=DPConfig(delta=1e-3, noise_multiplier=1.0),
    )
    with pytest.raises(PrivauditError, match="ran once for the whole batch.*freeze it"):
        train_classifier(**data, config=TrainConfig(epochs=1, batch_size=16, max_length=24, base=str(base)))
    head = TrainConfig(epochs=1, batch_size=16, max_length=24, base=str(base), train_layers="head")
    assert train_classifier(**data, config=head).dp["grad_sample_mode"] == "bk"

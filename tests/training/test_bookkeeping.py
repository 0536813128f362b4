"""Book-Keeping DP-SGD (``privaudit/training/bookkeeping.py``): against Opacus, against per-example autograd, noise, accounting, seeds.

The gradient tests use a one-layer BERT of width 32 with dropout off, so that two runs of the same batch see the same
function; the training tests use ``conftest.TINY_ARCH`` through ``train_classifier``.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import LABELS, TINY_ARCH, make_records
from opacus.accountants import create_accountant
from opacus.grad_sample import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from privaudit.errors import PrivauditError
from privaudit.stats.accounting import epsilon
from privaudit.training import bookkeeping as bk
from privaudit.training.bookkeeping import BookKeepingDP
from privaudit.training.train import DPConfig, TrainConfig, _forward, train_classifier

BATCH, WIDTH, VOCAB, PAD = 6, 10, 50, 0


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
        num_labels=3,
        initializer_range=0.5,  # weights large enough that every position's gradient counts, not only [CLS]'s
    )
    return BertForSequenceClassification(config).train()


def batch(*, attended_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Examples of different lengths, padded; repeated tokens, so embedding rows collect several positions."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 8, (BATCH, WIDTH), generator=g)
    lengths = torch.tensor([10, 7, 4, 10, 2, 6])
    mask = (torch.arange(WIDTH)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # PAD (0) past each example's end
    if attended_pad:  # a padding token where the pooler reads: nn.Embedding gives its row no gradient all the same
        ids[0, 0] = PAD
    return ids, mask, torch.tensor([0, 1, 2, 0, 1, 2])


def per_sample_loss(model: nn.Module, ids, mask, labels) -> torch.Tensor:
    return nn.functional.cross_entropy(_forward(model, ids, mask), labels, reduction="none")


def bk_grads(model: nn.Module, *, max_grad_norm: float, data=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Book-keeping's noiseless clipped gradient for one batch, by parameter name, and the per-sample norms."""
    engine = BookKeepingDP(
        model,
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        expected_batch_size=BATCH,
        generator=torch.Generator().manual_seed(0),
    )
    engine.step_gradients(per_sample_loss(model, *(data or batch())))
    engine.detach()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}, engine.per_sample_norms_


def assert_close(ours: dict, theirs: dict, rtol: float = 1e-5) -> None:
    """Every parameter's gradient within ``rtol`` of the reference, relative to the largest entry of that gradient.

    The attention key's bias is the exception: its gradient is zero in exact arithmetic (softmax ignores a shift
    common to one query's scores), so both sides hold only rounding error, measured against the whole gradient.
    """
    assert ours.keys() == theirs.keys()
    scale = max(float(t.abs().max()) for t in theirs.values())
    for name in ours:
        reference = scale if name.endswith("key.bias") else float(theirs[name].abs().max())
        error = float((ours[name] - theirs[name]).abs().max())
        assert error <= rtol * reference, f"{name}: max error {error:.3g}, reference {reference:.3g}"


def explicit_per_sample_grads(model: nn.Module, data) -> list[dict[str, torch.Tensor]]:
    """Each example's gradient by plain autograd, one example at a time, padded as in the batch."""
    ids, mask, labels = data
    out = []
    for i in range(len(labels)):
        model.zero_grad(set_to_none=True)
        width = int(mask.sum(dim=1).max())  # the batch's width, so that positions and padding are the same
        logits = model(
            input_ids=ids[i : i + 1, :width],
            attention_mask=mask[i : i + 1, :width],
            token_type_ids=torch.zeros_like(ids[i : i + 1, :width]),
            position_ids=torch.arange(width)[None, :],
        ).logits
        nn.functional.cross_entropy(logits, labels[i : i + 1]).backward()
        out.append({name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad})
    return out


# --- correctness -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ghost", [True, False], ids=["ghost-norm", "per-sample-gradient"])
@pytest.mark.parametrize("max_grad_norm", [0.1, 30.0], ids=["all-clipped", "some-clipped"])
def test_clipped_gradient_equals_opacus(max_grad_norm: float, ghost: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both ways to a Linear layer's norm, whichever the size rule would pick for this model.
    monkeypatch.setattr(bk, "_ghost_norm_is_cheaper", lambda *_: ghost)
    model = tiny_bert()
    ours, norms = bk_grads(copy.deepcopy(model), max_grad_norm=max_grad_norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        optimizer = DPOptimizer(
            torch.optim.SGD(wrapped.parameters(), lr=0.1),
            noise_multiplier=0.0,
            max_grad_norm=max_grad_norm,
            expected_batch_size=BATCH,
        )
        ids, mask, labels = batch()
        nn.functional.cross_entropy(_forward(wrapped, ids, mask), labels).backward()
        optimizer.pre_step()
    theirs = {name: p.grad for name, p in model.named_parameters()}
    assert_close(ours, theirs)
    assert (norms > max_grad_norm).any()  # clipping took place: the comparison is not between plain gradients
    assert (norms < max_grad_norm).any() == (max_grad_norm == 30.0)


def test_without_clipping_equals_the_mean_gradient() -> None:
    data = batch(attended_pad=True)
    model = tiny_bert()
    ours, _ = bk_grads(copy.deepcopy(model), max_grad_norm=1e6, data=data)
    per_sample_loss(model, *data).mean().backward()
    assert_close(ours, {name: p.grad for name, p in model.named_parameters()})


@pytest.mark.parametrize(
    "trainable",
    [
        "",  # everything
        # One layer at a time (the rest frozen), so that a small layer's error is not lost in the whole norm.
        "bert.embeddings.word_embeddings.",
        "bert.embeddings.position_embeddings.",
        "bert.embeddings.LayerNorm.",
        "bert.encoder.layer.0.attention.self.key.",
        "bert.encoder.layer.0.intermediate.dense.",
        "bert.pooler.",
    ],
)
def test_per_sample_norms_equal_explicit_per_sample_gradients(trainable: str) -> None:
    data = batch(attended_pad=True)
    model = tiny_bert()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(trainable))
    ours, norms = bk_grads(copy.deepcopy(model), max_grad_norm=1.0, data=data)
    explicit = explicit_per_sample_grads(model, data)
    assert ours.keys() == explicit[0].keys() and len(ours) > 0
    # Summed in float64: a float32 norm over millions of entries (MiniLM's) is itself off by 1e-4.
    expected = torch.stack([sum(g.double().square().sum() for g in grads.values()).sqrt() for grads in explicit])
    torch.testing.assert_close(norms.double(), expected, rtol=1e-5, atol=1e-7)


# --- noise -------------------------------------------------------------------------------------------------------


def test_noise_has_std_noise_multiplier_times_clip_norm_over_expected_batch_size() -> None:
    model = tiny_bert()
    engine = BookKeepingDP(
        model, noise_multiplier=2.0, max_grad_norm=0.5, expected_batch_size=BATCH, generator=torch.Generator()
    )
    ids, mask, _ = batch()
    engine.step_gradients(_forward(model, ids, mask).sum(dim=1) * 0.0)  # a zero gradient: only noise is left
    noise = torch.cat([p.grad.flatten() for p in model.parameters()])
    engine.step_empty_batch()  # an empty Poisson batch: noise, on the same scale
    empty = torch.cat([p.grad.flatten() for p in model.parameters()])
    expected = 2.0 * 0.5 / BATCH
    for sample in (noise, empty):
        assert len(sample) > 10_000
        # The sample std of n normal draws has relative standard error 1 / sqrt(2n): under 0.7% here.
        assert float(sample.std()) == pytest.approx(expected, rel=0.04)
        assert abs(float(sample.mean())) < 5 * expected / len(sample) ** 0.5
    assert not torch.equal(noise, empty)


# --- what the engine refuses -----------------------------------------------------------------------------------


def test_refuses_other_trainable_layers_and_accepts_them_frozen() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(4, 4, 1))
    with pytest.raises(PrivauditError, match="Conv1d"):
        BookKeepingDP(
            model, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=8, generator=torch.Generator()
        )
    model[1].requires_grad_(False)
    engine = BookKeepingDP(
        model, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=8, generator=torch.Generator()
    )
    assert list(engine.layers.values()) == ["0"]


class Tied(nn.Module):
    """Two layers holding one weight (tied), and a layer run twice (ALBERT's shared layers)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)
        self.twice, self.head = nn.Linear(4, 4), nn.Linear(4, 3)
        self.second.weight = self.first.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.second(torch.tanh(self.first(x))))
        return self.head(torch.tanh(self.twice(torch.tanh(self.twice(h)))))


def _clipped_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float) -> dict[str, torch.Tensor]:
    # Each example's whole gradient (every use of a weight summed by autograd), clipped, summed, over the batch size.
    params = dict(model.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for i in range(len(x)):
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()))
        norm = torch.sqrt(sum(g.square().sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for name, g in zip(params, grads):
            total[name] += factor * g
    return {name: g / len(x) for name, g in total.items()}


@pytest.mark.parametrize("clip", [0.05, 100.0], ids=["clipped", "unclipped"])
def test_tied_and_twice_run_weights_clip_each_examples_summed_gradient(clip: float) -> None:
    model = Tied()
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 0, 1, 2])
    expected = _clipped_by_hand(model, x, y, clip)
    engine = BookKeepingDP(
        model, noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=6, generator=torch.Generator()
    )
    engine.step_gradients(nn.functional.cross_entropy(model(x), y, reduction="none"))
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7)


def test_lookups_broadcast_over_the_batch_are_widened_per_example() -> None:
    # Hugging Face looks up one row of positions for the whole batch; the engine widens it to one row per example
    # (the same values), so the model's own forward, without position_ids, gives each example's own gradient.
    model = tiny_bert()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("bert.embeddings.position_embeddings."))
    data = batch()
    ours, norms = bk_grads(copy.deepcopy(model), max_grad_norm=1.0, data=data)
    explicit = explicit_per_sample_grads(model, data)
    expected = torch.stack([sum(g.double().square().sum() for g in grads.values()).sqrt() for grads in explicit])
    torch.testing.assert_close(norms.double(), expected, rtol=1e-5, atol=1e-7)
    assert float(norms.min()) > 0


def engine_for(model: nn.Module) -> BookKeepingDP:
    return BookKeepingDP(
        model, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4, generator=torch.Generator()
    )


class ReadsAWeightDirectly(nn.Module):
    """Uses an embedding table's weight without calling the embedding, as DeBERTa does its relative positions."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.table = nn.Linear(4, 2), nn.Embedding(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + self.table.weight[0])


@pytest.mark.parametrize(
    ("model", "complaint"),
    [
        (ReadsAWeightDirectly(), "'table' are used outside its forward"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True)), "'0' was changed in place"),
    ],
    ids=["weight-read-directly", "output-changed-in-place"],
)
def test_refuses_what_it_cannot_see_at_step_time(model: nn.Module, complaint: str) -> None:
    engine = engine_for(model)
    with pytest.raises(PrivauditError, match=complaint):
        engine.step_gradients(model(torch.randn(4, 4)).sum(dim=1))


# --- in train_classifier ---------------------------------------------------------------------------------------


def train_bk(*, seed: int = 0, mode: str = "bk", examples: int = 48, batch_size: int = 16):
    records = make_records(examples)
    return train_classifier(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=TrainConfig(epochs=2, batch_size=batch_size, max_length=24, seed=seed, architecture=TINY_ARCH),
        dp=DPConfig(delta=1e-3, noise_multiplier=1.1, grad_sample_mode=mode),
    )


@pytest.mark.parametrize(
    ("examples", "batch_size"),
    # Expected batch size 1 over 12 examples: about a third of the Poisson batches are empty, a noise-only step.
    [(48, 16), (12, 1)],
    ids=["batches", "empty-batches"],
)
def test_training_matches_opacus_step_for_step(examples: int, batch_size: int) -> None:
    # Same Poisson batches (Opacus's sampler on the same generator), same clipping, same noise (same generator, same
    # parameter order): the weights agree with Opacus ghost clipping's to float rounding, after noisy steps.
    trained = train_bk(examples=examples, batch_size=batch_size)
    opacus_path = train_bk(mode="ghost", examples=examples, batch_size=batch_size)
    ours, theirs = trained.model.state_dict(), opacus_path.model.state_dict()
    assert all(torch.allclose(ours[name], theirs[name], rtol=0, atol=1e-6) for name in theirs)
    other_seed = train_bk(seed=1, examples=examples, batch_size=batch_size).model.state_dict()
    assert not all(torch.allclose(ours[name], other_seed[name]) for name in ours)  # the agreement is not trivial
    dp = trained.dp
    assert {**dp, "grad_sample_mode": "ghost"} == opacus_path.dp
    assert dp["grad_sample_mode"] == "bk" and dp["poisson_sampling"]
    assert not any(m._forward_hooks for m in trained.model.modules())  # returned without the engine's hooks


def test_accounting_is_opacus_stepped_once_a_step() -> None:
    dp = train_bk().dp
    accountant = create_accountant(mechanism=dp["accountant"])
    for _ in range(dp["steps"]):
        accountant.step(noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"])
    recorded = epsilon(
        noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"], steps=dp["steps"], delta=dp["delta"]
    )
    assert dp["epsilon"] == pytest.approx(accountant.get_epsilon(delta=dp["delta"]), rel=1e-9) == recorded


def test_same_seed_same_weights() -> None:
    first, second, other = (train_bk(seed=seed).model.state_dict() for seed in (0, 0, 1))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_auto_takes_opacus_ghost_clipping_where_book_keeping_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DPConfig(delta=1e-3, noise_multiplier=1.0).grad_sample_mode == "auto"
    assert train_bk(mode="auto").dp["grad_sample_mode"] == "bk"
    monkeypatch.setattr(bk, "RULES", {nn.Linear: bk._linear, nn.Embedding: bk._embedding})  # no LayerNorm
    assert train_bk(mode="auto").dp["grad_sample_mode"] == "ghost"
    with pytest.raises(PrivauditError, match="LayerNorm"):
        train_bk(mode="bk")


def test_positions_without_gradient_are_left_out_and_nan_is_kept() -> None:
    # In a [CLS] classifier the last layer's feed-forward gets a gradient at position 0 only: its norms and sums are
    # taken there alone (the comparisons with Opacus above run through that path for the one-layer model).
    x, g = torch.randn(3, 5, 4), torch.zeros(3, 5, 2)
    g[1, 0], g[2, 3, 1] = 1.0, float("nan")
    kept_x, kept_g, sliced = bk._live_positions(x, g)
    assert sliced and torch.equal(kept_x, x[:, [0, 3]]) and kept_g.shape == (3, 2, 2)
    assert bk._live_positions(x, torch.ones(3, 5, 2))[2] is False

"""Training privaudit's word models: DP-SGD by book-keeping equals Opacus's, early stopping, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LABELS, make_records, write_jsonl
from torch import nn

from privaudit.target import Target
from privaudit.training.bookkeeping import BookKeepingDP
from privaudit.training.train import DPConfig, TrainConfig, _forward, train_classifier
from privaudit.training.word_models import WordModel

SIZES = {"embedding_dim": 8, "hidden_size": 6, "num_filters": 4, "char_embedding_dim": 4, "char_filters": 3}


def train_dp(*, arch: str, chars: bool, mode: str, seed: int = 0):
    records = make_records(48)
    return train_classifier(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=TrainConfig(
            epochs=2,
            batch_size=16,
            max_length=24,
            seed=seed,
            arch=arch,
            architecture=None,
            word_model=WordModel(char_embeddings=chars, dropout=0.1, **SIZES),
        ),
        dp=DPConfig(delta=1e-3, noise_multiplier=1.1, grad_sample_mode=mode),
    )


@pytest.mark.parametrize(("arch", "chars"), [("bilstm", False), ("bilstm", True), ("cnn", True)])
def test_dp_sgd_book_keeping_equals_opacus_step_for_step(arch: str, chars: bool) -> None:
    # Same Poisson batches, clipping, noise and dropout masks: book-keeping's weights agree with Opacus's per-sample
    # hooks (which sum a recurrent layer's per-step gradients, as book-keeping does) to float rounding.
    ours = train_dp(arch=arch, chars=chars, mode="bk")
    theirs = train_dp(arch=arch, chars=chars, mode="hooks")
    assert ours.dp["grad_sample_mode"] == "bk" and theirs.dp["grad_sample_mode"] == "hooks"
    a, b = ours.model.state_dict(), theirs.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[name], b[name], rtol=0, atol=1e-6) for name in a)
    other = train_dp(arch=arch, chars=chars, mode="bk", seed=1).model.state_dict()
    assert not all(torch.allclose(a[name], other[name]) for name in a)  # the agreement is not trivial


def test_book_keeping_per_sample_norms_on_a_bilstm_equal_explicit_autograd() -> None:
    # Independent of Opacus: each example's gradient by plain autograd, one example at a time, against the norms
    # book-keeping finds from one backward pass over the padded batch (the recurrent layer runs once a time step).
    from privaudit.models import BiLSTMConfig
    from privaudit.models.recurrent import BiLSTMForSequenceClassification

    torch.manual_seed(0)
    config = BiLSTMConfig(
        vocab_size=30, embedding_dim=6, hidden_size=5, char_vocab=list("abc"), char_embedding_dim=3, char_filters=4,
        max_word_length=4, num_labels=3,
    )  # fmt: skip
    model = BiLSTMForSequenceClassification(config).train()
    model.embeddings.char_ids.copy_(torch.randint(0, 5, model.embeddings.char_ids.shape))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 30, (5, 7), generator=g)
    mask = (torch.arange(7)[None, :] < torch.tensor([7, 3, 5, 1, 6])[:, None]).long()
    ids, labels = ids * mask, torch.tensor([0, 1, 2, 0, 1])
    engine = BookKeepingDP(
        model, noise_multiplier=0.0, max_grad_norm=1e6, expected_batch_size=5, generator=torch.Generator()
    )
    engine.step_gradients(nn.functional.cross_entropy(_forward(model, ids, mask), labels, reduction="none"))
    engine.detach()
    explicit = []
    for i in range(5):
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1]).logits
        nn.functional.cross_entropy(logits, labels[i : i + 1]).backward()
        explicit.append(torch.sqrt(sum(p.grad.square().sum() for p in model.parameters() if p.grad is not None)))
    torch.testing.assert_close(engine.per_sample_norms_, torch.stack(explicit), rtol=1e-5, atol=1e-7)


def test_early_stopping_keeps_the_best_epoch_and_records_it(tmp_path: Path) -> None:
    from privaudit.training import job as trainjob

    members = write_jsonl(tmp_path / "members.jsonl", make_records(45, seed=1))
    validation = write_jsonl(tmp_path / "validation.jsonl", make_records(15, seed=9))
    job = trainjob.TrainJob(
        data=members, out=tmp_path / "model", arch="cnn", word_model=WordModel(**SIZES), epochs=12, batch_size=8,
        max_length=24, lr=0.05, early_stopping=2, validation=validation,
    )  # fmt: skip
    trainjob.run_train(job)
    recipe = json.loads((job.out / "privaudit.json").read_text())
    stop = recipe["early_stopping"]
    losses = stop["validation_loss"]
    assert stop["patience"] == 2 and len(losses) == stop["stopped_epoch"] <= 12
    assert stop["best_epoch"] == int(np.argmin(losses)) + 1
    assert stop["stopped_epoch"] == 12 or stop["stopped_epoch"] - stop["best_epoch"] == 2
    assert recipe["recipe"]["validation_file"] == str(validation.resolve())
    # The saved weights are the best epoch's: their validation loss is the recorded minimum.
    target = Target.load(job.out)
    records = [json.loads(line) for line in validation.read_text().splitlines()]
    logits = torch.from_numpy(target.logits([r["text"] for r in records]))
    truth = torch.tensor([target.label2id[r["label"]] for r in records])
    assert float(nn.functional.cross_entropy(logits, truth)) == pytest.approx(min(losses), abs=1e-5)


@pytest.mark.parametrize(
    ("flags", "vectors", "complaint"),
    [
        (["--arch", "rnn"], None, "--arch 'rnn' is unknown; use one of bert, bilstm, cnn"),
        (["--arch", "bilstm"], "the 0.1 0.2 0.3\nplay 0.4 zero 0.6\n", "vectors.txt:2: not a word vector"),
        (["--arch", "bilstm"], "the 0.1 0.2 0.3\nplay 0.4 0.6\n", "vectors.txt:2: 2 numbers, but the first vector has 3"),
        (
            ["--arch", "cnn", "--embedding-dim", "4"],
            "2 3\nthe 0.1 0.2 0.3\nplay 0.4 0.5 0.6\n",
            "the vectors have 3 dimensions, but --embedding-dim is 4",
        ),
        (["--arch", "bilstm", "--early-stopping", "3"], None, "--early-stopping needs validation data"),
        (["--validation-fraction", "0.2"], None, "--validation and --validation-fraction are for --early-stopping"),
        (["--arch", "bert", "--char-embeddings"], None, "apply to --arch bilstm or cnn"),
    ],
    ids=["arch-unknown", "vectors-unparsable", "vectors-ragged", "vectors-dimension", "no-validation",
         "validation-without-early-stopping", "word-flag-on-bert"],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(tiny_data, tmp_path, run_cli, flags, vectors, complaint):
    if vectors is not None:
        (tmp_path / "vectors.txt").write_text(vectors)
        flags = [*flags, "--word-vectors", tmp_path / "vectors.txt"]
    out = tmp_path / "model"
    result = run_cli("train", tiny_data, "--out", out, "--epochs", 1, "--device", "cpu", *flags)
    assert result.exit_code == 2, result.output
    assert complaint in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and not out.exists()


def test_frozen_word_vectors_stay_as_read(tiny_data, tmp_path, run_cli):
    (tmp_path / "vectors.txt").write_text("play 1 2 3\nalarm 4 5 6\n")
    out = tmp_path / "model"
    result = run_cli(
        "train", tiny_data, "--out", out, "--arch", "bilstm", "--word-vectors", tmp_path / "vectors.txt",
        "--hidden-size", 4, "--epochs", 1, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    target = Target.load(out)
    table = target.input_embeddings().weight
    vocab = target.tokenizer.get_vocab()
    assert table.shape[1] == 3 and target.model.config.freeze_embeddings
    assert table[vocab["play"]].tolist() == [1, 2, 3] and table[vocab["alarm"]].tolist() == [4, 5, 6]


def test_the_fused_lstm_computes_what_the_step_by_step_one_does() -> None:
    # Scoring and ordinary training run PyTorch's fused LSTM on the Linear layers' weights; DP-SGD, whose hooks
    # watch those layers, runs them step by step. Same logits and same gradients, padding included.
    from privaudit.models import BiLSTMConfig
    from privaudit.models.recurrent import BiLSTMForSequenceClassification

    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(
        BiLSTMConfig(vocab_size=30, embedding_dim=6, hidden_size=5, num_labels=3)
    ).eval()
    ids = torch.randint(1, 30, (4, 7), generator=torch.Generator().manual_seed(2))
    mask = (torch.arange(7)[None, :] < torch.tensor([7, 2, 5, 4])[:, None]).long()
    ids = ids * mask

    def logits_and_grads():
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, attention_mask=mask).logits
        logits.square().sum().backward()
        return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    fused = logits_and_grads()
    handle = model.forward_lstm.recurrent.register_forward_hook(lambda *_: None)  # watched: step by step
    calls = []
    counter = model.forward_lstm.recurrent.register_forward_hook(lambda *_: calls.append(1))
    stepwise = logits_and_grads()
    handle.remove()
    counter.remove()
    assert len(calls) == 7  # one call a time step: the step-by-step path ran
    torch.testing.assert_close(stepwise[0], fused[0], rtol=1e-5, atol=1e-6)
    for name in fused[1]:
        torch.testing.assert_close(stepwise[1][name], fused[1][name], rtol=1e-4, atol=1e-6)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        return train_dp(arch="bilstm", chars=True, mode="bk", seed=seed).model.state_dict()

    first, second, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)

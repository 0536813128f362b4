"""Training (``privaudit/training/train.py``, ``privaudit/training/job.py``): recipes, DP-SGD accounting, determinism, canaries, saves.

Every model here is the tiny BERT of ``conftest.TINY_ARCH`` on tens of examples: seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CANARY_TEMPLATE, FIXTURE_DATA, LABELS, TINY_ARCH, TinyModel, make_records, write_jsonl

from privaudit.canary.canaries import read_canaries
from privaudit.data import fingerprint, read_dataset
from privaudit.errors import PrivauditError
from privaudit.stats.accounting import epsilon, epsilon_from_model
from privaudit.target import Target
from privaudit.training import job as trainjob
from privaudit.training import train as train_module
from privaudit.training.job import TrainJob, run_train
from privaudit.training.model import SPECIAL_TOKENS, train_tokenizer
from privaudit.training.save import save_model
from privaudit.training.train import DPConfig, TrainConfig, TrainedModel, train_classifier

TINY = TrainConfig(epochs=1, batch_size=16, max_length=24, architecture=TINY_ARCH)
MODEL_FILES = {"config.json", "model.safetensors", "privaudit.json", "tokenizer.json", "tokenizer_config.json"}


def train(records: list[dict], *, config: TrainConfig = TINY, dp: DPConfig | None = None, on_step=None) -> TrainedModel:
    return train_classifier(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=config,
        dp=dp,
        on_step=on_step,
    )


def logits(trained: TrainedModel, texts: list[str]) -> np.ndarray:
    enc = trained.tokenizer(
        texts, padding=True, truncation=True, max_length=trained.config.max_length, return_tensors="pt"
    )
    with torch.inference_mode():
        return trained.model(**enc).logits.numpy()


def accounted(dp: dict) -> float:
    """Epsilon recomputed from the fields privaudit.json records."""
    return epsilon(
        noise_multiplier=dp["noise_multiplier"],
        sample_rate=dp["sample_rate"],
        steps=dp["steps"],
        delta=dp["delta"],
        accountant=dp["accountant"],
    )


def recipe_of(model_dir: Path) -> dict:
    return json.loads((model_dir / "privaudit.json").read_text(encoding="utf-8"))


# --- the session model: run_train without DP, with canaries ---------------------------------------------------------


def test_trained_model_loads_back_with_its_recipe(tiny_model: TinyModel) -> None:
    assert {p.name for p in tiny_model.path.iterdir()} == MODEL_FILES
    target = Target.load(tiny_model.path)
    recipe = recipe_of(tiny_model.path)
    expected = TrainConfig(epochs=3, batch_size=16, max_length=24, seed=0, architecture=TINY_ARCH)
    assert recipe["recipe"] == json.loads(json.dumps(asdict(expected)))
    assert recipe["labels"] == list(LABELS)
    assert target.label2id == {name: i for i, name in enumerate(LABELS)}
    assert target.max_length == 24
    members = read_dataset(tiny_model.members)
    assert recipe["data"]["fingerprint"] == fingerprint(members.texts, members.labels)
    assert recipe["data"]["n_examples"] == 90
    assert recipe["dp"] is None
    assert epsilon_from_model(tiny_model.path) is None
    assert 0.0 <= recipe["train_accuracy"] <= 1.0
    assert target.logits(list(members.texts[:5])).shape == (5, 3)


def test_canaries_are_planted_repeats_times_and_kept_outside_the_model(tiny_model: TinyModel) -> None:
    assert tiny_model.path not in tiny_model.canaries.parents
    canaries = read_canaries(tiny_model.canaries)
    exposure = [c for c in canaries if c.kind == "exposure"]
    audit = [c for c in canaries if c.kind == "audit"]
    assert [(c.inserted, c.repeats) for c in exposure] == [(True, 5)] * 3 + [(False, 0)] * 3
    assert all(c.template == CANARY_TEMPLATE and c.label in LABELS for c in exposure)
    assert len(audit) == 8
    n_audit = sum(c.inserted for c in audit)
    recipe = recipe_of(tiny_model.path)
    assert recipe["data"]["n_with_canaries"] == 90 + 3 * 5 + n_audit
    assert recipe["canaries"] == {
        "template": CANARY_TEMPLATE,
        "label": "random",
        "count": 3,
        "repeats": 5,
        "audit_canaries": 8,
        "planted_examples": 3 * 5 + n_audit,
    }


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch, tiny_model: TinyModel) -> list[dict]:
    """Replaces training in ``run_train`` by the session model; returns the calls' arguments as they come."""
    target = Target.load(tiny_model.path)
    calls: list[dict] = []

    def fake(**kwargs) -> TrainedModel:
        calls.append(kwargs)
        return TrainedModel(
            model=target.model,
            tokenizer=target.tokenizer,
            label_names=kwargs["label_names"],
            # The session model's own max_length: privaudit.json must not promise more positions than it has.
            config=dataclasses.replace(kwargs["config"], max_length=target.max_length),
            dp=None,
            seconds=0.0,
            train_accuracy=0.5,
        )

    monkeypatch.setattr(trainjob, "train_classifier", fake)
    return calls


def test_training_set_holds_each_canary_repeats_times_and_no_control(tmp_path: Path, fake_training: list[dict]) -> None:
    records = make_records(60)
    data = write_jsonl(tmp_path / "train.jsonl", records)
    job = TrainJob(
        data=data,
        out=tmp_path / "model",
        canary=CANARY_TEMPLATE,
        canary_label="set_alarm",
        canary_count=4,
        canary_repeats=3,
        canary_controls=6,
        audit_canaries=20,
        canaries_out=tmp_path / "canaries.jsonl",
    )
    run_train(job)
    (call,) = fake_training
    counts = Counter(call["texts"])
    label_of = dict(zip(call["texts"], call["labels"]))
    canaries = read_canaries(job.canaries_out)
    for canary in canaries:
        assert counts[canary.text] == (canary.repeats if canary.inserted else 0), canary
        if canary.inserted:
            assert LABELS[label_of[canary.text]] == canary.label
    assert sum(not c.inserted for c in canaries if c.kind == "exposure") == 6
    assert all(c.label == "set_alarm" for c in canaries if c.kind == "exposure")
    # The data come first and unchanged; the planted copies follow.
    assert call["texts"][:60] == [r["text"] for r in records]
    n_planted = 4 * 3 + sum(c.inserted for c in canaries if c.kind == "audit")
    assert len(call["texts"]) == recipe_of(job.out)["data"]["n_with_canaries"] == 60 + n_planted


@pytest.mark.parametrize(
    "where", ["model/canaries.jsonl", "model/deeper/canaries.jsonl", "model", "./model/../model/c"]
)
def test_canary_file_inside_the_model_directory_is_refused(tmp_path: Path, tiny_data: Path, where: str) -> None:
    job = TrainJob(
        data=tiny_data,
        out=tmp_path / "model",
        canary=CANARY_TEMPLATE,
        canary_label="random",
        canaries_out=tmp_path / where,
    )
    with pytest.raises(PrivauditError, match="must not be written inside the model directory"):
        run_train(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_a_canary_file_that_cannot_be_written_leaves_no_model(tmp_path: Path, tiny_data: Path, fake_training) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    job = TrainJob(
        data=tiny_data,
        out=tmp_path / "model",
        canary=CANARY_TEMPLATE,
        canary_label="random",
        canaries_out=tmp_path / "a-file" / "canaries.jsonl",
    )
    with pytest.raises(PrivauditError, match="cannot write the canary file"):
        run_train(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "train.jsonl"]


# --- DP-SGD ------------------------------------------------------------------------------------------------------------


def test_dp_training_records_its_accounting(tmp_path: Path, tiny_data: Path, tiny_arch) -> None:
    job = TrainJob(
        data=tiny_data,
        out=tmp_path / "model",
        epochs=2,
        batch_size=16,
        max_length=16,
        dp=True,
        noise_multiplier=1.0,
        delta=1e-3,
        max_grad_norm=0.5,
    )
    summary = run_train(job)
    Target.load(job.out)
    recipe = recipe_of(job.out)
    dp = recipe["dp"]
    assert dp["noise_multiplier"] == 1.0
    assert dp["sample_rate"] == 1 / math.ceil(60 / 16)  # Poisson sampling at batch size / N, as Opacus sets it
    assert dp["steps"] == 2 * 4
    assert dp["delta"] == 1e-3
    assert dp["max_grad_norm"] == 0.5
    assert dp["accountant"] == "rdp"
    assert dp["poisson_sampling"] is True
    assert dp["epsilon"] == pytest.approx(accounted(dp), rel=1e-12)
    assert epsilon_from_model(job.out) == (pytest.approx(dp["epsilon"], rel=1e-12), 1e-3)
    assert summary["epsilon"].startswith(f"{dp['epsilon']:.3f} ")
    dataset = read_dataset(tiny_data)
    assert recipe["data"]["fingerprint"] == fingerprint(dataset.texts, dataset.labels)
    assert recipe["recipe"]["architecture"] == asdict(TINY_ARCH)


def test_target_epsilon_picks_the_noise_that_reaches_it(tmp_path: Path, tiny_data: Path, tiny_arch) -> None:
    job = TrainJob(
        data=tiny_data,
        out=tmp_path / "model",
        epochs=1,
        batch_size=4,  # sample rate 1/15: the accountant's search is quick there
        max_length=16,
        dp=True,
        target_epsilon=1.0,
        delta=1e-3,
    )
    run_train(job)
    dp = recipe_of(job.out)["dp"]
    assert dp["steps"] == 15  # the steps the noise was planned for
    assert 0.9 < accounted(dp) <= 1.0
    assert dp["epsilon"] == pytest.approx(accounted(dp), rel=1e-12)


def test_empty_poisson_batches_take_noise_steps_the_accountant_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Expected batch size 1 over 12 examples: P(empty batch) = (11/12)^12, about 0.35, so several of the 12 steps
    # draw nobody. Each must still add noise to the weights and count in the epsilon.
    empty_steps: list[bool] = []
    real_step = train_module._empty_batch_step

    def spy(optimizer, *, ghost: bool) -> None:
        before = [p.detach().clone() for p in optimizer.params]
        real_step(optimizer, ghost=ghost)
        empty_steps.append(any(not torch.equal(a, p) for a, p in zip(before, optimizer.params)))

    monkeypatch.setattr(train_module, "_empty_batch_step", spy)
    progress: list[tuple[int, int]] = []
    trained = train(
        make_records(12),
        config=replace(TINY, batch_size=1),
        dp=DPConfig(delta=1e-3, noise_multiplier=1.0, grad_sample_mode="ghost"),  # spies on the Opacus path
        on_step=lambda done, total: progress.append((done, total)),
    )
    assert empty_steps and all(empty_steps)  # there were empty batches, and each one moved the weights
    assert progress == [(i, 12) for i in range(1, 13)]
    assert trained.dp["steps"] == 12
    assert trained.dp["epsilon"] == pytest.approx(accounted(trained.dp), rel=1e-12)


def test_tokenizer_training_is_deterministic() -> None:
    # Tokenizers' WordPiece trainer numbers "##x" pieces in hash-map order and breaks merge ties by number: left alone
    # it gave a different vocabulary on every run (huggingface/tokenizers#1794).
    texts = [json.loads(line)["text"] for line in (FIXTURE_DATA / "members.jsonl").read_text().splitlines()]
    first = train_tokenizer(texts, vocab_size=4000, max_length=32)
    assert first.get_vocab() == train_tokenizer(texts, vocab_size=4000, max_length=32).get_vocab()
    # Only the five real special tokens are special: the pieces registered up front are ordinary vocabulary.
    assert sorted(first.all_special_tokens) == sorted(SPECIAL_TOKENS)
    ids = first("turn on the lights please")["input_ids"]
    assert ids[0] == first.cls_token_id and ids[-1] == first.sep_token_id
    pieces = first.convert_ids_to_tokens(ids[1:-1])
    assert any(piece.startswith("##") for piece in pieces)
    assert first.decode(ids, skip_special_tokens=True).split() == pieces  # no piece is dropped as "special"


@pytest.mark.parametrize("dp", [None, DPConfig(delta=1e-3, noise_multiplier=1.0)], ids=["sgd", "dp-sgd"])
def test_same_seed_same_model(dp: DPConfig | None) -> None:
    records = make_records(60)
    probe = [r["text"] for r in make_records(10, seed=5)]
    first = logits(train(records, dp=dp), probe)
    np.testing.assert_array_equal(logits(train(records, dp=dp), probe), first)
    other = logits(train(records, dp=dp, config=replace(TINY, seed=1)), probe)
    assert not np.allclose(other, first)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"noise_multiplier": 0.0}, "--noise-multiplier must be above 0"),
        ({"noise_multiplier": None}, "--dp needs --noise-multiplier or --target-epsilon"),
        ({"accountant": "moments"}, "--accountant 'moments' is unknown"),
        ({"max_grad_norm": 0.0}, "--max-grad-norm must be above 0"),
        ({"delta": 1.0}, "--delta must be in"),
        ({"noise_multiplier": None, "target_epsilon": -1.0}, "--target-epsilon must be above 0"),
    ],
)
def test_dp_config_is_checked(change: dict, complaint: str) -> None:
    with pytest.raises(PrivauditError, match=complaint):
        DPConfig(**{"delta": 1e-5, "noise_multiplier": 1.0, **change})


# --- flags and data run_train refuses before it trains --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"dp": True, "noise_multiplier": 1.0, "delta": 0.05}, r"--delta 0\.05 is not below 1/N = 0\.017"),
        ({"noise_multiplier": 1.0}, "--noise-multiplier and --target-epsilon need --dp"),
        ({"dp": True, "noise_multiplier": 1.0, "target_epsilon": 8.0}, "not both"),
        ({"base": Path("base"), "from_scratch": True}, "not both"),
        ({"canary": CANARY_TEMPLATE}, "canaries need --canaries-out FILE"),
        ({"canaries_out": Path("c.jsonl")}, "--canaries-out needs --canary TEMPLATE"),
        ({"canary": CANARY_TEMPLATE, "canaries_out": Path("c.jsonl")}, "--canary needs --canary-label"),
        (
            {"canary": CANARY_TEMPLATE, "canary_label": "book_flight", "canaries_out": Path("c.jsonl")},
            "--canary-label 'book_flight' is not a label of .*; use 'random', 'new' or one of get_weather, play_music, set_alarm",
        ),
    ],
)
def test_bad_flags_are_refused_and_nothing_is_written(
    tmp_path: Path, tiny_data: Path, fake_training: list[dict], change: dict, complaint: str
) -> None:
    change = {key: tmp_path / value if isinstance(value, Path) else value for key, value in change.items()}
    job = TrainJob(data=tiny_data, out=tmp_path / "model", **change)
    with pytest.raises(PrivauditError, match=complaint):
        run_train(job)
    assert fake_training == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_existing_output_is_kept_without_overwrite(tmp_path: Path, tiny_data: Path, fake_training: list[dict]) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(PrivauditError, match="already exists; choose another --out or pass --overwrite"):
        run_train(TrainJob(data=tiny_data, out=tmp_path / "model"))
    assert fake_training == []
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["keep.txt"]
    run_train(TrainJob(data=tiny_data, out=tmp_path / "model", overwrite=True))
    assert {p.name for p in (tmp_path / "model").iterdir()} == MODEL_FILES


@pytest.mark.parametrize("labels", [[0, 1, 2], ["get_weather", "play_music", 1]], ids=["ids", "names-and-ids"])
def test_training_labels_must_be_names(tmp_path: Path, fake_training: list[dict], labels: list) -> None:
    data = write_jsonl(
        tmp_path / "train.jsonl", [{"text": f"text {i}", "label": label} for i, label in enumerate(labels)]
    )
    with pytest.raises(PrivauditError, match="training data needs label names, not ids"):
        run_train(TrainJob(data=data, out=tmp_path / "model"))
    assert fake_training == []


# --- save_model: all or nothing --------------------------------------------------------------------------------------


@pytest.fixture
def trained(tiny_model: TinyModel) -> TrainedModel:
    target = Target.load(tiny_model.path)
    return TrainedModel(
        model=target.model,
        tokenizer=target.tokenizer,
        label_names=list(LABELS),
        config=TINY,
        dp=None,
        seconds=0.0,
        train_accuracy=1.0,
    )


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_save_model_leaves_nothing_when_writing_fails(tmp_path: Path, trained: TrainedModel, monkeypatch) -> None:
    monkeypatch.setattr(trained.tokenizer, "save_pretrained", _fail)  # after the weights were written
    with pytest.raises(OSError, match="No space left"):
        save_model(trained, tmp_path / "model", {"dp": None})
    assert list(tmp_path.iterdir()) == []  # neither the directory nor its temporary sibling


def test_save_model_failure_keeps_the_model_it_would_replace(
    tmp_path: Path, trained: TrainedModel, monkeypatch
) -> None:
    save_model(trained, tmp_path / "model", {"version": 1})
    monkeypatch.setattr(trained.tokenizer, "save_pretrained", _fail)
    with pytest.raises(OSError):
        save_model(trained, tmp_path / "model", {"version": 2}, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert recipe_of(tmp_path / "model") == {"version": 1}
    monkeypatch.undo()
    save_model(trained, tmp_path / "model", {"version": 3}, overwrite=True)
    assert recipe_of(tmp_path / "model") == {"version": 3}
    assert Target.load(tmp_path / "model").recipe == {"version": 3}

"""White-box gradient canaries (``privaudit/training/gradient_canaries.py``, ``privaudit/training/canary_insertion.py``).

Every model is the tiny BERT of ``conftest.TINY_ARCH`` on tens of examples, trained a few steps: seconds each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LABELS, TINY_ARCH, TinyModel, make_records
from sklearn.metrics import roc_auc_score

from privaudit.canary.canaries import read_canaries
from privaudit.errors import PrivauditError
from privaudit.training import bookkeeping as bk
from privaudit.training import canary_insertion
from privaudit.training.gradient_canaries import (
    gradient_canary_scores,
    likelihood_ratio_scores,
    read_gradient_canaries,
    record_path,
    sum_scores,
)
from privaudit.training.job import TrainJob, run_train
from privaudit.training.train import DPConfig, TrainConfig, TrainedModel, train_classifier

RECORDS = make_records(48)


def train(
    *, m: int, mode: str = "bk", seed: int = 0, noise: float = 1.1, epochs: int = 2, batch_size: int = 16
) -> TrainedModel:
    return train_classifier(
        texts=[r["text"] for r in RECORDS],
        labels=np.array([LABELS.index(r["label"]) for r in RECORDS]),
        label_names=list(LABELS),
        config=TrainConfig(epochs=epochs, batch_size=batch_size, max_length=24, seed=seed, architecture=TINY_ARCH),
        dp=DPConfig(delta=1e-3, noise_multiplier=noise, grad_sample_mode=mode),
        gradient_canaries=m,
    )


def data_weights(trained: TrainedModel, vocabulary: int) -> dict[str, torch.Tensor]:
    """Every weight, the word embedding cut to the rows the data can reach (without the reserved ones)."""
    weights = dict(trained.model.state_dict())
    name = "bert.embeddings.word_embeddings.weight"
    weights[name] = weights[name][:vocabulary]
    return weights


# --- coordinates, insertion, observation ------------------------------------------------------------------------


def test_data_gradient_is_exactly_zero_at_every_canary_coordinate(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_insert = canary_insertion.GradientCanaries.insert

    def spy(self, clipped_sum: torch.Tensor, *, scale: float = 1.0) -> None:
        flat = clipped_sum.view(-1)
        seen.append((flat[self._index].clone(), flat.clone()))
        real_insert(self, clipped_sum, scale=scale)

    monkeypatch.setattr(canary_insertion.GradientCanaries, "insert", spy)
    trained = train(m=100)
    assert len(seen) == trained.dp["steps"] == 6
    for at_canaries, _ in seen:
        assert torch.count_nonzero(at_canaries) == 0  # exactly zero, not small
    assert any(torch.count_nonzero(whole) > 0 for _, whole in seen)  # the rows the data uses did get gradients
    canaries = trained.gradient_canaries
    vocabulary = len(trained.tokenizer) - canaries.reserved
    assert canaries.reserved == 4  # ceil(100 / width 32) rows, appended after the data's vocabulary
    assert (canaries.coordinates[:, 0] >= vocabulary).all()
    assert len({tuple(c) for c in canaries.coordinates}) == 100  # one coordinate each


def test_a_coordinate_the_data_touches_is_refused() -> None:
    weight = torch.nn.Parameter(torch.zeros(4, 3))
    canaries = canary_insertion.GradientCanaries(
        parameter=weight, name="emb", rows=np.array([2]), m=3, reserved=0, seed=0
    )
    clipped = torch.zeros(4, 3)
    clipped[2, 1] = 1e-30  # however small
    with pytest.raises(PrivauditError, match=r"coordinate \(2, 1\) of 'emb' got a gradient from the data"):
        canaries.insert(clipped)


def test_record_shape_coin_flips_and_poisson_sampling() -> None:
    # 48 examples in batches of 8: q = 1/6 over 4 epochs, 24 steps.
    trained = train(m=600, epochs=4, batch_size=8)
    canaries = trained.gradient_canaries
    steps, q = trained.dp["steps"], trained.dp["sample_rate"]
    assert canaries.observations.shape == (steps, 600) and steps == 24
    n_in = int(canaries.inserted.sum())
    assert abs(n_in - 300) < 4 * np.sqrt(600 / 4)  # each in with probability 1/2
    assert (canaries.times_sampled[~canaries.inserted] == 0).all()  # an out-canary is never added
    sampled = canaries.times_sampled[canaries.inserted]
    # Each in-canary is sampled Binomial(steps, q) times: mean q * steps, and never at every step.
    assert abs(sampled.mean() - q * steps) < 4 * np.sqrt(q * (1 - q) * steps / n_in)
    assert sampled.max() < steps


# --- the scores -------------------------------------------------------------------------------------------------


def test_likelihood_ratio_score_is_the_mixture_ratio() -> None:
    x = np.array([[0.3, -1.0], [2.0, 0.5], [-0.2, 0.0]])
    q, sigma = 0.2, 0.8
    expected = np.log(1 - q + q * np.exp((x - 0.5) / sigma**2)).sum(axis=0)
    np.testing.assert_allclose(likelihood_ratio_scores(x, sample_rate=q, noise_multiplier=sigma), expected, rtol=1e-12)
    # Every step sampled (q = 1): an increasing affine map of the plain sum.
    full = likelihood_ratio_scores(x, sample_rate=1.0, noise_multiplier=sigma)
    np.testing.assert_allclose(full, (sum_scores(x) - 0.5 * len(x)) / sigma**2)
    assert np.isfinite(likelihood_ratio_scores(np.array([[1e4]]), sample_rate=q, noise_multiplier=0.1)).all()


def ideal_auc(*, m: int, steps: int, q: float, sigma: float, seed: int = 1) -> float:
    """The LR scores' AUC on the ideal mechanism at noise ``sigma``, simulated with many canaries."""
    rng = np.random.default_rng(seed)
    inserted = np.arange(m) % 2 == 0
    x = rng.normal(0.0, sigma, (steps, m)) + inserted * (rng.random((steps, m)) < q)
    return roc_auc_score(inserted, likelihood_ratio_scores(x, sample_rate=q, noise_multiplier=sigma))


def test_honest_engine_separates_as_its_noise_allows_and_a_broken_one_more(monkeypatch: pytest.MonkeyPatch) -> None:
    honest = train(m=2000, noise=0.9, epochs=4, batch_size=8)
    canaries = honest.gradient_canaries
    steps, q = canaries.observations.shape[0], canaries.sample_rate
    scores = likelihood_ratio_scores(canaries.observations, sample_rate=q, noise_multiplier=0.9)
    auc = roc_auc_score(canaries.inserted, scores)
    claimed = ideal_auc(m=200_000, steps=steps, q=q, sigma=0.9)
    assert abs(auc - claimed) < 0.035  # about 4 standard errors of an AUC on 1,000 against 1,000
    out_std = canaries.observations[:, ~canaries.inserted].std()
    assert out_std == pytest.approx(0.9, rel=0.03)  # out-canaries see the noise alone: sigma, in units of C

    real = bk.BookKeepingDP._noise_std
    monkeypatch.setattr(bk.BookKeepingDP, "_noise_std", lambda self: 0.5 * real(self))  # half the claimed noise
    broken = train(m=2000, noise=0.9, epochs=4, batch_size=8)
    assert broken.dp["noise_multiplier"] == 0.9  # the claim is unchanged
    record = broken.gradient_canaries
    assert record.noise_multiplier == 0.9
    broken_auc = roc_auc_score(
        record.inserted, likelihood_ratio_scores(record.observations, sample_rate=q, noise_multiplier=0.9)
    )
    assert broken_auc > claimed + 0.1  # far beyond what the claimed noise allows
    assert record.observations[:, ~record.inserted].std() == pytest.approx(0.45, rel=0.03)


def test_generous_budget_separates_in_from_out() -> None:
    canaries = train(m=400, noise=0.3, epochs=4, batch_size=8).gradient_canaries
    scores = likelihood_ratio_scores(canaries.observations, sample_rate=canaries.sample_rate, noise_multiplier=0.3)
    sampled = canaries.times_sampled > 0
    # A canary sampled at least once mostly stands out (3.3 sigma a sample); an in-canary never sampled cannot.
    assert np.median(scores[sampled]) > np.quantile(scores[~canaries.inserted], 0.99)
    assert roc_auc_score(canaries.inserted, scores) > 0.9


# --- the data path ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bk", "ghost"])
def test_canaries_leave_the_data_path_alone(mode: str) -> None:
    without = train(m=0, mode=mode)
    with_canaries = train(m=100, mode=mode)
    again = train(m=100, mode=mode)
    assert with_canaries.dp["grad_sample_mode"] == mode
    vocabulary = len(without.tokenizer)
    ours, theirs = data_weights(with_canaries, vocabulary), data_weights(without, vocabulary)
    # Same Poisson batches, dropout and noise on every data coordinate: the canaries draw from streams of their own.
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    assert with_canaries.train_accuracy == without.train_accuracy
    np.testing.assert_array_equal(with_canaries.gradient_canaries.observations, again.gradient_canaries.observations)
    np.testing.assert_array_equal(with_canaries.gradient_canaries.inserted, again.gradient_canaries.inserted)
    other = train(m=100, mode=mode, seed=1).gradient_canaries
    assert not np.array_equal(other.observations, with_canaries.gradient_canaries.observations)


def test_opacus_hooks_mode_records_the_same_as_book_keeping() -> None:
    # Same clipped sums, same noise at the canary rows (the canaries' generator): the same record, to rounding.
    ours = train(m=64, mode="bk").gradient_canaries
    theirs = train(m=64, mode="hooks").gradient_canaries
    np.testing.assert_allclose(ours.observations, theirs.observations, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours.times_sampled, theirs.times_sampled)


# --- files and flags --------------------------------------------------------------------------------------------


def test_run_train_writes_the_coins_to_the_canary_file_and_the_record_beside_it(
    tmp_path: Path, tiny_data: Path, tiny_arch
) -> None:
    job = TrainJob(
        data=tiny_data,
        out=tmp_path / "model",
        epochs=1,
        batch_size=16,
        dp=True,
        noise_multiplier=1.0,
        delta=1e-3,
        gradient_canaries=50,
        audit_canaries=4,
        canaries_out=tmp_path / "model.canaries.jsonl",
    )
    summary = run_train(job)
    assert "gradient canaries" in summary
    recipe = json.loads((job.out / "privaudit.json").read_text(encoding="utf-8"))
    assert recipe["dp"]["gradient_canaries"] == 50  # the count only
    assert "inserted" not in json.dumps(recipe)
    assert not any("gradient" in p.name for p in job.out.iterdir())
    record = record_path(job.canaries_out)
    assert record == tmp_path / "model.canaries.gradient.npz" and record.is_file()
    with np.load(record, allow_pickle=False) as npz:
        assert npz["observations"].shape == (recipe["dp"]["steps"], 50)
        assert float(npz["noise_multiplier"]) == 1.0
    lines = [json.loads(line) for line in job.canaries_out.read_text(encoding="utf-8").splitlines()]
    gradient = [line for line in lines if line["kind"] == "gradient"]
    assert [line["index"] for line in gradient] == list(range(50))
    assert {line["record"] for line in gradient} == {record.name}
    assert len(read_canaries(job.canaries_out)) == 4  # the input-space audit canaries, the gradient ones skipped
    scores, inserted = gradient_canary_scores(job.canaries_out)
    assert scores.shape == inserted.shape == (50,) and scores.dtype == np.float64 and inserted.dtype == np.int64
    np.testing.assert_array_equal(inserted, [line["inserted"] for line in gradient])
    loaded = read_gradient_canaries(job.canaries_out)
    np.testing.assert_allclose(
        scores,
        likelihood_ratio_scores(loaded.observations, sample_rate=loaded.sample_rate, noise_multiplier=1.0),
    )


def test_gradient_canaries_need_dp(run_cli, tmp_path: Path, tiny_data: Path) -> None:
    result = run_cli(
        "train", tiny_data, "--out", tmp_path / "m", "--gradient-canaries", 10, "--canaries-out", tmp_path / "c.jsonl"
    )
    assert result.exit_code == 2
    assert "--gradient-canaries needs --dp" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_on_a_base_model_the_canaries_take_rows_no_text_uses(tiny_model: TinyModel) -> None:
    records = make_records(30, seed=1)
    texts = [r["text"] for r in records]
    trained = train_classifier(
        texts=texts,
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=TrainConfig(epochs=1, batch_size=10, max_length=24, base=str(tiny_model.path), architecture=None),
        dp=DPConfig(delta=1e-3, noise_multiplier=1.0),
        gradient_canaries=40,
    )
    canaries = trained.gradient_canaries
    assert canaries.reserved == 0 and canaries.parameter.shape[0] == len(trained.tokenizer)  # no row added
    used = {token for ids in trained.tokenizer(texts)["input_ids"] for token in ids}
    rows = set(canaries.coordinates[:, 0].tolist())
    assert not rows & used and not rows & set(trained.tokenizer.all_special_ids)
    assert canaries.observations.shape == (trained.dp["steps"], 40)


def test_too_many_canaries_for_a_base_model_are_refused(run_cli, tmp_path: Path, tiny_model: TinyModel) -> None:
    # On a base model the canaries need vocabulary rows that no training text uses; the tiny vocabulary has few.
    result = run_cli(
        "train",
        tiny_model.members,
        "--base",
        tiny_model.path,
        "--out",
        tmp_path / "m",
        "--dp",
        "--noise-multiplier",
        "1.0",
        "--delta",
        "1e-3",
        "--epochs",
        1,
        "--gradient-canaries",
        100_000,
        "--canaries-out",
        tmp_path / "c.jsonl",
    )
    assert result.exit_code == 2
    assert "--gradient-canaries 100000: only" in result.stderr and "get no gradient from the data" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


@pytest.mark.parametrize("mode", ["bk", "ghost"])
def test_empty_poisson_batches_still_insert_and_record(mode: str) -> None:
    # Expected batch size 1 over 12 examples: about a third of the steps draw no example, and still count.
    records = make_records(12)
    trained = train_classifier(
        texts=[r["text"] for r in records],
        labels=np.array([LABELS.index(r["label"]) for r in records]),
        label_names=list(LABELS),
        config=TrainConfig(epochs=3, batch_size=1, max_length=24, seed=0, architecture=TINY_ARCH),
        dp=DPConfig(delta=1e-3, noise_multiplier=1.0, grad_sample_mode=mode),
        gradient_canaries=200,
    )
    canaries = trained.gradient_canaries
    assert canaries.observations.shape == (trained.dp["steps"], 200) == (36, 200)
    assert np.isfinite(canaries.observations).all()
    # q = 1/12 over 36 steps: about 3 samplings an in-canary, never all 36.
    sampled = canaries.times_sampled[canaries.inserted]
    assert abs(sampled.mean() - 3.0) < 4 * np.sqrt(36 * (1 / 12) * (11 / 12) / len(sampled))
    assert sampled.max() < 36

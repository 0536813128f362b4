"""``GradientCanaries`` on a tiny embedding model under Opacus: the record's units, the optimizer's own noise, the
clipping probe, empty Poisson batches, and bad input."""

from __future__ import annotations

import types

import pytest
import torch
from opacus import PrivacyEngine
from opacus.optimizers.optimizer import _mark_as_processed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privaudit.errors import PrivauditError
from privaudit.integrations.opacus import GradientCanaries
from privaudit.training.gradient_canaries import read_gradient_canaries

VOCAB, WIDTH, USED = 400, 8, 20  # ids 0..19 are the data's; rows 20..399 are free: 3,040 coordinates


class Bag(nn.Module):
    """Mean of the token embeddings, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.head = nn.Linear(WIDTH, 2)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(dim=1))


def make_private(*, n: int = 40, batch_size: int = 10, sigma: float = 1.0, clip: float = 2.5, seed: int = 0):
    torch.manual_seed(seed)
    ids = torch.randint(0, USED, (n, 5))
    data = TensorDataset(ids, torch.randint(0, 2, (n,)))
    model = Bag()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
        module=model,
        optimizer=optimizer,
        data_loader=DataLoader(data, batch_size=batch_size),
        noise_multiplier=sigma,
        max_grad_norm=clip,
        noise_generator=torch.Generator().manual_seed(seed),
    )
    return model, optimizer, loader, ids


def run(model, optimizer, loader, steps: int) -> int:
    loss_fn = nn.CrossEntropyLoss(reduction="sum")  # an empty batch's sum is 0, its mean would be nan
    done = 0
    while done < steps:
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return done


def test_record_is_in_units_of_c_with_the_optimizers_noise(tmp_path):
    sigma, clip, steps = 0.5, 2.5, 20
    model, optimizer, loader, ids = make_private(sigma=sigma, clip=clip)
    out = tmp_path / "run.canaries.jsonl"
    with GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=1.0, out=out, count=3000) as hook:
        run(model, optimizer, loader, steps)
    record = read_gradient_canaries(out)
    assert hook.steps == steps and record.observations.shape == (steps, 3000)
    assert (record.sample_rate, record.max_grad_norm, record.noise_multiplier) == (1.0, clip, sigma)
    x_in, x_out = record.observations[:, record.inserted], record.observations[:, ~record.inserted]
    # At q = 1 every inserted canary adds C each step: records are 1 + sigma z in, sigma z out (units of C).
    assert x_in.mean() == pytest.approx(1.0, abs=0.02) and x_out.mean() == pytest.approx(0.0, abs=0.02)
    assert x_in.std() == pytest.approx(sigma, rel=0.03) and x_out.std() == pytest.approx(sigma, rel=0.03)
    assert (record.times_sampled[record.inserted] == steps).all() and (
        record.times_sampled[~record.inserted] == 0
    ).all()


def test_the_canaries_get_the_optimizers_own_noise(tmp_path):
    # The same seeds with and without the hook: the noise draws are the same, so every free coordinate of the
    # embedding's gradient is the same, canary coordinates less the canaries' own C.
    grads = []
    for hooked in (False, True):
        model, optimizer, loader, ids = make_private(sigma=0.7)
        if hooked:
            GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=1.0, out=tmp_path / "a.jsonl", count=50)
        torch.manual_seed(1)
        run(model, optimizer, loader, 1)
        grads.append(model._module.embed.weight.grad.clone() if hasattr(model, "_module") else model.embed.weight.grad)
    plain, hooked = grads
    diff = (hooked - plain).reshape(-1)
    changed = diff.abs() > 1e-6
    assert 0 < int(changed.sum()) <= 50  # only inserted canary coordinates moved
    # ... by C / batch (Opacus's scale_grad divides the noisy sum by the expected batch size, 10).
    assert torch.allclose(diff[changed], torch.full_like(diff[changed], 2.5 / 10), atol=1e-5)


def _unclipped(self) -> None:
    for p in self.params:
        grad = self._get_flat_grad_sample(p).sum(dim=0)
        p.summed_grad = grad if p.summed_grad is None else p.summed_grad + grad
        _mark_as_processed(p.grad_sample)


def test_the_clipping_probe_sees_skipped_clipping(tmp_path):
    model, optimizer, loader, ids = make_private(sigma=0.5)
    optimizer.clip_and_accumulate = types.MethodType(_unclipped, optimizer)
    out = tmp_path / "c.jsonl"
    with GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=1.0, out=out, count=500, canary_norm=10):
        run(model, optimizer, loader, 5)
    record = read_gradient_canaries(out)
    assert record.observations[:, record.inserted].mean() == pytest.approx(10.0, abs=0.1)


def test_empty_poisson_batches_are_steps_too(tmp_path):
    model, optimizer, loader, ids = make_private(n=10, batch_size=1)  # q = 0.1: a batch is empty with p = 0.35
    sizes = []
    original = optimizer.clip_and_accumulate

    def clip_and_accumulate() -> None:
        sizes.append(len(optimizer.grad_samples[0]))
        original()

    optimizer.clip_and_accumulate = clip_and_accumulate
    out = tmp_path / "e.jsonl"
    with GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=0.1, out=out, count=100) as hook:
        steps = run(model, optimizer, loader, 30)
    assert 0 in sizes and hook.steps == steps == 30
    assert read_gradient_canaries(out).observations.shape == (30, 100)


def test_data_touching_a_canary_row_is_an_error(tmp_path):
    model, optimizer, loader, ids = make_private()
    GradientCanaries(
        optimizer, model=model, token_ids=ids[:, :1] * 0, sample_rate=1.0, out=tmp_path / "t.jsonl", count=100
    )
    with pytest.raises(PrivauditError, match="got a gradient from the data"):
        run(model, optimizer, loader, 1)


def test_not_a_dp_optimizer_is_refused_in_one_line(tmp_path):
    model = Bag()
    with pytest.raises(PrivauditError) as err:
        GradientCanaries(torch.optim.SGD(model.parameters(), lr=0.1), model=model, token_ids=[1], out=tmp_path / "x")
    assert str(err.value) == (
        "GradientCanaries needs an Opacus DPOptimizer (what PrivacyEngine.make_private returns), "
        "got torch.optim.sgd.SGD"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": None}, "needs sample_rate="),
        ({"sample_rate": 1.5}, "sample_rate must be in"),
        ({"count": 10**6}, "room for 3040 canaries"),
        ({"token_ids": [[0, VOCAB]]}, "ids outside the embedding"),
        ({"model": None}, "needs model="),
        ({"canary_norm": 0.5}, "canary_norm must be"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    model, optimizer, _, ids = make_private()
    args = {"model": model, "token_ids": ids, "sample_rate": 0.25, "out": tmp_path / "b.jsonl", "count": 100}
    with pytest.raises(PrivauditError, match=message) as err:
        GradientCanaries(optimizer, **{**args, **kwargs})
    assert "\n" not in str(err.value)


def test_dataset_size_gives_the_rate_and_out_must_be_new(tmp_path):
    model, optimizer, _, ids = make_private(n=40, batch_size=10)
    hook = GradientCanaries(optimizer, model=model, token_ids=ids, dataset_size=40, out=tmp_path / "d.jsonl", count=10)
    assert hook.sample_rate == 0.25
    (tmp_path / "e.jsonl").write_text("", encoding="utf-8")
    model, optimizer, _, ids = make_private()
    with pytest.raises(PrivauditError, match="already exists"):
        GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=0.25, out=tmp_path / "e.jsonl")
    with pytest.raises(PrivauditError, match="already has GradientCanaries"):
        GradientCanaries(optimizer, model=model, token_ids=ids, dataset_size=40, out=tmp_path / "f.jsonl", count=10)
        GradientCanaries(optimizer, model=model, token_ids=ids, dataset_size=40, out=tmp_path / "g.jsonl", count=10)


def test_save_without_steps_is_an_error(tmp_path):
    model, optimizer, _, ids = make_private()
    hook = GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=0.25, out=tmp_path / "s.jsonl", count=10)
    with pytest.raises(PrivauditError, match="recorded no step"):
        hook.save()
    assert not (tmp_path / "s.jsonl").exists()


def test_ghost_clipping_optimizer_records_in_units_of_c(tmp_path):
    # Ghost clipping clips inside the module: the canaries enter clipped (norm C), and the noise is the optimizer's.
    torch.manual_seed(0)
    ids = torch.randint(0, USED, (40, 5))
    data = TensorDataset(ids, torch.randint(0, 2, (40,)))
    model = Bag()
    model, optimizer, criterion, loader = PrivacyEngine(accountant="rdp").make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=nn.CrossEntropyLoss(),
        data_loader=DataLoader(data, batch_size=10),
        noise_multiplier=0.5,
        max_grad_norm=2.0,
        grad_sample_mode="ghost",
        noise_generator=torch.Generator().manual_seed(0),
    )
    assert type(optimizer).__name__ == "DPOptimizerFastGradientClipping"
    out = tmp_path / "g.jsonl"
    with GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=1.0, out=out, count=2000) as hook:
        for _ in range(10):
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
    record = read_gradient_canaries(out)
    x_in, x_out = record.observations[:, record.inserted], record.observations[:, ~record.inserted]
    assert hook.steps == record.observations.shape[0] > 0
    assert x_in.mean() == pytest.approx(1.0, abs=0.03) and x_out.mean() == pytest.approx(0.0, abs=0.03)
    assert x_out.std() == pytest.approx(0.5, rel=0.05)


def test_accumulated_micro_batches_make_one_step(tmp_path):
    # BatchMemoryManager's way: signal_skip_step(True) makes a step only clip and accumulate; the noise step after it
    # adds the canaries once, and the record has one row per noise step.
    model, optimizer, loader, ids = make_private(sigma=0.5)
    out = tmp_path / "acc.jsonl"
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with GradientCanaries(optimizer, model=model, token_ids=ids, sample_rate=1.0, out=out, count=2000) as hook:
        for _ in range(10):
            for micro, (x, y) in enumerate(loader):
                optimizer.zero_grad()  # after a skipped step it keeps the accumulated clipped sum
                if micro % 2 == 0:
                    optimizer.signal_skip_step(True)
                loss_fn(model(x), y).backward()
                optimizer.step()
    record = read_gradient_canaries(out)
    assert hook.steps == record.observations.shape[0] == 20  # 4 micro-batches an epoch, 2 noise steps
    x_in, x_out = record.observations[:, record.inserted], record.observations[:, ~record.inserted]
    assert x_in.mean() == pytest.approx(1.0, abs=0.03) and x_out.std() == pytest.approx(0.5, rel=0.05)

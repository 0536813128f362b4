"""Gradient canaries in a DP-SGD loop that privaudit does not run: the user's own Opacus ``DPOptimizer``.

``GradientCanaries(optimizer, ...)`` wraps the optimizer's ``add_noise``, the one place where the clipped sum of the
step (``p.summed_grad``) exists before the noise and the noisy sum (``p.grad``) exists before ``scale_grad`` and the
update (opacus/optimizers/optimizer.py, ``pre_step``). At every noise step it

1. checks that the data's clipped sum is exactly zero at every canary coordinate (rows of the input embedding that no
   training input uses);
2. sends one Dirac per-sample gradient ``G e_j`` (``G`` = ``canary_norm`` times the clipping norm ``C``) through the
   optimizer's own ``clip_and_accumulate``, so that a clipping bug shows in what a canary contributes;
3. adds that clipped contribution at the coordinate of every canary sampled this step (each inserted canary is
   sampled independently at the Poisson rate ``q``) to ``p.summed_grad``;
4. lets the optimizer's own ``add_noise`` run: the canaries get exactly the noise the data gets;
5. records the noisy sum at every canary coordinate, in units of ``C``, and puts the data's sum back as it was.

The record and the canary file are privaudit's own gradient-canary format
(:mod:`privaudit.training.gradient_canaries`), so ``privaudit dp-audit --canaries FILE`` audits them unchanged.

The hook samples its canaries itself, at the rate it is told: it sees noise and clipping bugs, not a bug in how the
data is sampled (shuffled fixed-size batches accounted as Poisson sampling look honest to it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from privaudit.errors import PrivauditError
from privaudit.training.canary_insertion import GradientCanaries as _Canaries
from privaudit.training.canary_insertion import unused_rows
from privaudit.training.gradient_canaries import record_path

__all__ = ["GradientCanaries"]


def _type_name(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _check_optimizer(optimizer: object) -> bool:
    """Refuse anything but a single-process Opacus DPOptimizer with one clipping norm; return whether it clips in the
    module (ghost clipping), where ``clip_and_accumulate`` does nothing and the clipping probe cannot run."""
    try:
        from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
    except ImportError:
        raise PrivauditError("GradientCanaries needs Opacus: pip install opacus") from None
    if not isinstance(optimizer, DPOptimizer):
        raise PrivauditError(
            f"GradientCanaries needs an Opacus DPOptimizer (what PrivacyEngine.make_private returns), "
            f"got {_type_name(optimizer)}"
        )
    name = type(optimizer).__name__
    if "Distributed" in name or "FSDP" in name or "AdaClip" in name:
        raise PrivauditError(f"GradientCanaries supports single-process Opacus optimizers, not {name}")
    if isinstance(optimizer.max_grad_norm, list | tuple) or not optimizer.max_grad_norm > 0:
        raise PrivauditError(
            f"GradientCanaries needs one positive clipping norm, got max_grad_norm={optimizer.max_grad_norm!r}"
        )
    if not optimizer.noise_multiplier > 0:
        raise PrivauditError(
            f"the optimizer claims noise_multiplier={optimizer.noise_multiplier}: no DP claim to audit"
        )
    if getattr(optimizer, "_privaudit_canaries", False):
        raise PrivauditError("this optimizer already has GradientCanaries attached")
    return isinstance(optimizer, DPOptimizerFastGradientClipping)


def _input_embedding(model: nn.Module | None, embedding: nn.Module | nn.Parameter | None) -> tuple[nn.Parameter, int]:
    """The embedding weight and its padding row (-1 for none): given, or the model's input embedding."""
    padding = None
    if embedding is None:
        if model is None:
            raise PrivauditError("GradientCanaries needs model= (to find its input embedding) or embedding=")
        inner = model
        while hasattr(inner, "_module") and isinstance(inner._module, nn.Module):  # GradSampleModule, DDP wrappers
            inner = inner._module
        if not hasattr(inner, "get_input_embeddings"):
            raise PrivauditError(
                f"cannot find the input embedding of {_type_name(inner)}: pass embedding=model.<its nn.Embedding>"
            )
        embedding = inner.get_input_embeddings()
    if isinstance(embedding, nn.Embedding):
        padding = embedding.padding_idx
        weight = embedding.weight
    else:
        weight = embedding
    if not isinstance(weight, nn.Parameter) or weight.dim() != 2:
        raise PrivauditError(f"embedding= must be an nn.Embedding or its (vocabulary, width) weight, got {weight!r}")
    return weight, -1 if padding is None else int(padding)


def _token_ids(token_ids: object) -> torch.Tensor:
    """Every id in ``token_ids``: a tensor or array, nested lists of ints, or an iterable of batches (tensors, dicts
    with ``input_ids``, or tuples whose first item holds the ids)."""
    if isinstance(token_ids, torch.Tensor):
        return token_ids.detach().reshape(-1).long().cpu()
    if isinstance(token_ids, np.ndarray):
        return torch.from_numpy(token_ids.reshape(-1).astype(np.int64))
    if isinstance(token_ids, dict):
        if "input_ids" not in token_ids:
            raise PrivauditError("token_ids: a dict batch needs 'input_ids'")
        return _token_ids(token_ids["input_ids"])
    if isinstance(token_ids, int | np.integer):
        return torch.tensor([int(token_ids)])
    if isinstance(token_ids, tuple) and token_ids and not isinstance(token_ids[0], int | np.integer):
        return _token_ids(token_ids[0])  # an (inputs, labels) batch
    if isinstance(token_ids, Iterable) and not isinstance(token_ids, str | bytes):
        parts = [_token_ids(item) for item in token_ids]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    raise PrivauditError(f"token_ids: expected the training data's token ids, got {type(token_ids).__name__}")


class GradientCanaries:
    """Dirac gradient canaries in the user's own Opacus DP-SGD loop, recorded for ``privaudit dp-audit``.

    Create it after ``PrivacyEngine.make_private`` and before training; call :meth:`save` (or use it as a context
    manager) when training ends. Example::

        model, optimizer, loader = PrivacyEngine().make_private(..., poisson_sampling=True)
        with GradientCanaries(optimizer, model=model, token_ids=train_ids, sample_rate=loader.sample_rate,
                              out="run.canaries.jsonl", count=5000, seed=0):
            train(model, optimizer, loader)
        # privaudit dp-audit --canaries run.canaries.jsonl --epsilon 8

    Args:
        optimizer: the ``DPOptimizer`` (or ghost-clipping ``DPOptimizerFastGradientClipping``) that
            ``make_private`` returned; anything else is refused.
        out: the canary file to write (JSONL of secrets; the record goes beside it as ``<stem>.gradient.npz``). Keep
            it away from the trainer's inputs.
        token_ids: every token id of the training data as the model reads it (a tensor, array, lists, or an
            iterable of batches such as a non-private DataLoader over the training set): the canaries use embedding
            rows none of them reaches.
        model: the model, to find its input embedding (``get_input_embeddings()``); or give ``embedding``.
        embedding: the input ``nn.Embedding`` or its weight, when the model has no ``get_input_embeddings``.
        count: number of canaries; each is inserted with probability 1/2. The more, the tighter the audit (5,000
            reach about 85% of an ideal one-run audit; a clipping or noise bug at epsilon 8 needs about 50,000 to
            show as a strict bound above 8). Each costs one float per step.
        sample_rate: the Poisson rate the accountant uses (``loader.sample_rate`` of Opacus's DPDataLoader); or
            give ``dataset_size`` and the rate is ``optimizer.expected_batch_size / dataset_size``.
        dataset_size: the number of training examples, when ``sample_rate`` is not given.
        seed: seeds the canaries' coins and sampling (a stream of their own: the data's sampling and noise draw
            nothing more than they would without the canaries).
        canary_norm: each canary's per-sample gradient norm before clipping, in units of the clipping norm; above 1
            so that missing clipping shows. Ghost clipping clips inside the module, so there the canaries enter
            already clipped (norm 1) and only noise bugs show.
        overwrite: replace an existing ``out``.

    Raises:
        PrivauditError: not a DPOptimizer, no noise claimed, no embedding, too few unused embedding coordinates,
            a bad rate, or ``out`` exists.
    """

    def __init__(
        self,
        optimizer,
        *,
        out: str | os.PathLike,
        token_ids: object,
        model: nn.Module | None = None,
        embedding: nn.Module | nn.Parameter | None = None,
        count: int = 5000,
        sample_rate: float | None = None,
        dataset_size: int | None = None,
        seed: int = 0,
        canary_norm: float = 10.0,
        overwrite: bool = False,
    ) -> None:
        self._ghost = _check_optimizer(optimizer)
        self.optimizer, self.out, self.canary_norm = optimizer, Path(out), float(canary_norm)
        if not overwrite and (self.out.exists() or record_path(self.out).exists()):
            raise PrivauditError(f"{self.out}: already exists; choose another out= or pass overwrite=True")
        if not math.isfinite(self.canary_norm) or self.canary_norm < 1:
            raise PrivauditError(
                f"canary_norm must be a finite number >= 1 (units of the clipping norm), got {canary_norm}"
            )
        self.sample_rate = self._rate(sample_rate, dataset_size)
        weight, padding = _input_embedding(model, embedding)
        if not any(p is weight for p in optimizer.params):
            raise PrivauditError("the input embedding is not among the optimizer's trainable parameters")
        used = _token_ids(token_ids)
        vocab, width = weight.shape
        if used.numel() == 0:
            raise PrivauditError("token_ids: no token ids; pass the training data's input ids")
        if int(used.min()) < 0 or int(used.max()) >= vocab:
            raise PrivauditError(f"token_ids: ids outside the embedding's {vocab} rows; is it the model's data?")
        rows = unused_rows(vocab, used, [padding])
        if count < 1 or len(rows) * width < count:
            raise PrivauditError(
                f"count={count}: the data leaves {len(rows)} embedding rows of width {width} unused, room for "
                f"{len(rows) * width} canaries; ask for at most that many"
            )
        name = next(n for n, p in _named(model, weight) if p is weight)
        self._canaries = _Canaries(parameter=weight, name=name, rows=rows, m=count, reserved=0, seed=seed)
        self._canaries.configure(
            sample_rate=self.sample_rate,
            max_grad_norm=float(optimizer.max_grad_norm),
            noise_multiplier=float(optimizer.noise_multiplier),
        )
        coordinates = self._canaries.coordinates
        self._index = torch.as_tensor(coordinates[:, 0] * width + coordinates[:, 1], device=weight.device)
        self._add_noise = optimizer.add_noise  # the optimizer's own (or the pipeline's, bugs and all)
        optimizer.add_noise = self._add_noise_with_canaries
        optimizer._privaudit_canaries = True

    def _rate(self, sample_rate: float | None, dataset_size: int | None) -> float:
        if sample_rate is None:
            batch = getattr(self.optimizer, "expected_batch_size", None)
            if dataset_size is None or batch is None:
                raise PrivauditError(
                    "GradientCanaries needs sample_rate= (the DPDataLoader's sample_rate) or dataset_size="
                )
            if dataset_size < 1:
                raise PrivauditError(f"dataset_size must be positive, got {dataset_size}")
            sample_rate = batch / dataset_size
        if not 0 < sample_rate <= 1:
            raise PrivauditError(f"sample_rate must be in (0, 1], got {sample_rate}")
        return float(sample_rate)

    @property
    def count(self) -> int:
        """Number of canaries."""
        return self._canaries.m

    @property
    def steps(self) -> int:
        """Noise steps recorded so far."""
        return len(self._canaries._observations)

    def _clipped_contribution(self) -> float:
        """What one canary adds to the clipped sum: its Dirac per-sample gradient through the optimizer's own
        ``clip_and_accumulate``, every parameter's state put back afterwards."""
        bound = self.optimizer.max_grad_norm
        if self._ghost:  # clipping happened in the module, before the optimizer saw any gradient
            return float(bound)
        params = self.optimizer.params
        saved = [(p, getattr(p, "grad_sample", None), p.summed_grad) for p in params]
        weight = self._canaries.parameter
        try:
            for p in params:
                p.summed_grad = None
                # A batch of one; stride-0 zeros cost no memory, the canary's own parameter gets a real tensor.
                p.grad_sample = torch.zeros((), dtype=p.dtype, device=p.device).expand(1, *p.shape)
            probe = torch.zeros((1, *weight.shape), dtype=weight.dtype, device=weight.device)
            probe.view(-1)[self._index[0]] = self.canary_norm * bound
            weight.grad_sample = probe
            self.optimizer.clip_and_accumulate()
            value = float(weight.summed_grad.reshape(-1)[self._index[0]])
        finally:
            for p, grad_sample, summed in saved:
                p.grad_sample, p.summed_grad = grad_sample, summed
        return value

    def _add_noise_with_canaries(self) -> None:
        weight = self._canaries.parameter
        if weight.summed_grad is None:
            self._add_noise()
            return
        contribution = self._clipped_contribution()
        summed = weight.summed_grad
        # Checks the data's sum is zero at every canary coordinate, samples, adds `contribution` where sampled.
        self._canaries.insert(summed, scale=contribution / self._canaries.max_grad_norm)
        try:
            self._add_noise()
            self._canaries.observe(weight.grad)
        finally:
            summed.view(-1)[self._index] = 0  # the data's clipped sum there, as checked

    def save(self) -> Path:
        """Write the record and the canary file (each written whole, then moved into place); return the file.

        Raises:
            PrivauditError: no step was recorded, or the files cannot be written.
        """
        if self.steps == 0:
            raise PrivauditError("GradientCanaries recorded no step: save() after training, with the optimizer wrapped")
        lines = self._canaries.save(self.out)
        tmp = self.out.with_name(self.out.name + ".tmp")
        try:
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            tmp.replace(self.out)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise PrivauditError(f"{self.out}: cannot write the canary file ({err.strerror or err})") from err
        return self.out

    def __enter__(self) -> GradientCanaries:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.save()


def _named(model: nn.Module | None, weight: nn.Parameter) -> Iterable[tuple[str, nn.Parameter]]:
    """The weight's name in the model (for the canary file), else ``input_embedding``."""
    if model is not None:
        yield from model.named_parameters(remove_duplicate=False)
    yield "input_embedding", weight

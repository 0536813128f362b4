"""Gradient canaries at training time: find coordinates no data reaches, insert before the noise, observe after it.

The file format and the scores are in ``privaudit.training.gradient_canaries``; the design (Nasr et al. 2023, "Tight
auditing of differentially private machine learning": Dirac canaries, all iterates observed) is described there.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from privaudit.errors import PrivauditError
from privaudit.training.gradient_canaries import KIND, record_path

# A stream of its own, so that the canaries draw nothing from the data's sampler, dropout or noise generators.
_STREAM = 0x67636E79


def _input_embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    embedding = model.get_input_embeddings()  # every family's token table (privaudit.families.adapter)
    if not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad:
        raise PrivauditError("gradient canaries need a trainable input embedding (nn.Embedding) to place them in")
    names = [name for name, p in model.named_parameters(remove_duplicate=False) if p is embedding.weight]
    # A tied embedding (an MLM head's decoder) gets the data's gradient in every row, used or not.
    if len(names) != 1:
        raise PrivauditError(
            f"gradient canaries need an input embedding that is not tied to another layer ({', '.join(names)})"
        )
    return names[0], embedding


def reserve_rows(model: nn.Module, tokenizer, rows: int) -> None:
    """Grow the vocabulary by ``rows`` reserved tokens, ``[unused0]`` and on, that no training text tokenizes to.

    The new rows are zeros and appended after the model was initialised, so every other weight starts as it would
    without them: the global generator draws nothing here.
    """
    _, embedding = _input_embedding(model)
    if embedding.num_embeddings != len(tokenizer):
        raise PrivauditError("cannot reserve canary rows: the embedding and the tokenizer disagree on the vocabulary")
    names = [f"[unused{i}]" for i in range(rows)]
    if set(names) & set(tokenizer.get_vocab()):
        raise PrivauditError("cannot reserve canary rows: the vocabulary already has [unused] tokens")
    tokenizer.add_special_tokens({"additional_special_tokens": names})
    weight = embedding.weight.detach()
    embedding.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(rows, weight.shape[1])]))
    embedding.num_embeddings += rows
    model.config.vocab_size = embedding.num_embeddings


def unused_rows(vocab_size: int, used_ids: torch.Tensor, never: Sequence[int]) -> np.ndarray:
    """Rows no training input reads, in ascending order: the ids absent from ``used_ids`` and from ``never``."""
    used = torch.zeros(vocab_size, dtype=torch.bool)
    used[used_ids.reshape(-1)] = True
    for token_id in never:
        if token_id is not None and 0 <= token_id < vocab_size:
            used[token_id] = True
    return np.flatnonzero(~used.numpy())


class GradientCanaries:
    """``m`` Dirac canaries in rows of one embedding matrix: insert before the noise, observe after it.

    An engine calls, for the canaries' parameter only, :meth:`insert` on the clipped sum and :meth:`observe` on the
    noisy one, and draws every parameter's noise through :meth:`add_noise`; all three once per step, empty batches too.

    Args:
        parameter: the embedding weight, (vocabulary, width).
        name: its name in the model.
        rows: the rows the canaries use; canary ``i`` owns (``rows[i // width]``, ``i % width``).
        m: number of canaries.
        reserved: how many rows at the end of ``parameter`` were appended for the canaries; their noise comes from a
            generator of the canaries' own, so that the data parameters' noise is what it would be without them.
        seed: the training seed; the canaries' coins, sampling and reserved-row noise derive from it.
    """

    def __init__(
        self,
        *,
        parameter: nn.Parameter,
        name: str,
        rows: np.ndarray,
        m: int,
        reserved: int,
        seed: int,
    ) -> None:
        width = parameter.shape[1]
        if m < 1 or len(rows) * width < m:
            raise PrivauditError(
                f"--gradient-canaries {m}: only {len(rows) * width} embedding coordinates ({len(rows)} unused rows "
                f"of width {width}) get no gradient from the data; ask for at most that many"
            )
        self.parameter, self.name, self.m, self.reserved = parameter, name, m, reserved
        self.sample_rate, self.max_grad_norm, self.noise_multiplier = 0.0, 1.0, 0.0  # set by configure()
        slots = np.arange(m)
        self.coordinates = np.stack([np.asarray(rows)[slots // width], slots % width], axis=1)
        self._index = torch.as_tensor(self.coordinates[:, 0] * width + self.coordinates[:, 1])
        coins, sampling, noise = np.random.SeedSequence([seed, _STREAM]).spawn(3)
        self.inserted = np.random.default_rng(coins).integers(0, 2, size=m).astype(bool)
        self._sampling = np.random.default_rng(sampling)
        self._noise_generator = torch.Generator().manual_seed(int(noise.generate_state(1)[0]))
        self.times_sampled = np.zeros(m, dtype=np.int64)
        self._observations: list[torch.Tensor] = []

    def configure(self, *, sample_rate: float, max_grad_norm: float, noise_multiplier: float) -> None:
        """The DP-SGD run's Poisson rate ``q``, clipping norm ``C`` and claimed ``sigma`` (recorded for the score)."""
        self.sample_rate, self.max_grad_norm, self.noise_multiplier = sample_rate, max_grad_norm, noise_multiplier

    def insert(self, clipped_sum: torch.Tensor, *, scale: float = 1.0) -> None:
        """Check the data left the canary coordinates alone, then add ``C e_j`` for every sampled canary.

        Args:
            clipped_sum: the parameter's clipped data gradient sum, before noise; changed in place.
            scale: the factor the engine has already applied to the sum (book-keeping divides by the batch size).

        Raises:
            PrivauditError: the data's clipped gradient is not exactly zero at a canary coordinate.
        """
        flat = clipped_sum.view(-1)
        touched = flat[self._index] != 0
        if bool(touched.any()):
            row, col = self.coordinates[int(touched.nonzero()[0, 0])]
            raise PrivauditError(
                f"gradient canary coordinate ({row}, {col}) of '{self.name}' got a gradient from the data; "
                "its row must be one that no training text uses"
            )
        # Poisson sampling at the data's rate, independently at every step: never every step when q < 1.
        sampled = self.inserted & (self._sampling.random(self.m) < self.sample_rate)
        self.times_sampled += sampled
        index = self._index[torch.from_numpy(sampled)].to(flat.device)  # index_add_ wants the index beside the sum
        flat.index_add_(0, index, flat.new_full((len(index),), self.max_grad_norm * scale))

    def add_noise(self, grad: torch.Tensor, p: nn.Parameter, std: float, generator: torch.Generator) -> None:
        """Add N(0, std^2) noise to ``grad`` (``p``'s), drawn as the engine would, the reserved rows apart (see Args)."""
        if p is not self.parameter or self.reserved == 0:
            grad += torch.normal(0.0, std, size=p.shape, generator=generator, device=p.device)
            return
        data_rows = p.shape[0] - self.reserved
        rest = p.shape[1:]
        grad[:data_rows] += torch.normal(0.0, std, size=(data_rows, *rest), generator=generator, device=p.device)
        grad[data_rows:] += torch.normal(0.0, std, size=(self.reserved, *rest), generator=self._noise_generator)

    def observe(self, noisy_sum: torch.Tensor, *, scale: float = 1.0) -> None:
        """Record the noisy sum at every canary coordinate, in units of ``C`` (``scale`` undoes the engine's)."""
        values = noisy_sum.detach().reshape(-1)[self._index].double().cpu()
        self._observations.append((values * (scale / self.max_grad_norm)).float())

    @property
    def observations(self) -> np.ndarray:
        """Every step's record, (steps, m), in units of ``C``."""
        if not self._observations:
            return np.zeros((0, self.m), dtype=np.float32)
        return torch.stack(self._observations).numpy()

    def save(self, canaries_file: Path) -> list[str]:
        """Write the record beside ``canaries_file``; return the canary file's lines for these canaries.

        The record (``.npz``, no pickle) holds what the white-box adversary sees and the public parameters; the
        lines hold the secrets (each canary's coin flip and how often it was sampled) and name the record.

        Raises:
            PrivauditError: the record cannot be written.
        """
        path = record_path(canaries_file)
        tmp = path.with_name(path.name + ".tmp.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                tmp,
                observations=self.observations,
                noise_multiplier=np.float64(self.noise_multiplier),
                sample_rate=np.float64(self.sample_rate),
                max_grad_norm=np.float64(self.max_grad_norm),
            )
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise PrivauditError(f"{path}: cannot write the gradient canary record ({err.strerror or err})") from err
        return [
            json.dumps(
                {
                    "kind": KIND,
                    "index": i,
                    "inserted": bool(self.inserted[i]),
                    "times_sampled": int(self.times_sampled[i]),
                    "parameter": self.name,
                    "coordinate": [int(v) for v in self.coordinates[i]],
                    "record": path.name,
                },
                sort_keys=True,
            )
            for i in range(self.m)
        ]


def hook_opacus(optimizer, canaries: GradientCanaries) -> None:
    """Make an Opacus ``DPOptimizer`` insert and observe ``canaries`` in its ``add_noise``: the one place where the
    clipped sum (``p.summed_grad``) exists before the noise, and the noisy sum (``p.grad``) before ``scale_grad``.

    The replacement is Opacus's own ``add_noise`` (opacus/optimizers/optimizer.py) with the canaries' two calls, and
    every parameter's noise drawn through :meth:`GradientCanaries.add_noise`: for the data parameters the same draws from
    the same generator as Opacus's ``_generate_noise``. Secure mode is not supported (privaudit never turns it on).
    """
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            grad = p.summed_grad.clone()  # the data's clipped sum stays as Opacus left it
            if p is canaries.parameter:
                canaries.insert(grad)
            if std > 0:
                canaries.add_noise(grad, p, std, self.generator)
            p.grad = grad.view_as(p)
            if p is canaries.parameter:
                canaries.observe(p.grad)
            _mark_as_processed(p.summed_grad)

    if optimizer.secure_mode:
        raise PrivauditError("gradient canaries do not support Opacus's secure mode")
    optimizer.add_noise = types.MethodType(add_noise, optimizer)


def plant_gradient_canaries(
    model: nn.Module,
    tokenizer,
    *,
    m: int,
    input_ids: torch.Tensor,
    from_scratch: bool,
    seed: int,
) -> GradientCanaries:
    """Find (from scratch: reserve) ``m`` coordinates no training input reaches, and set up the canaries there.

    Args:
        model: the model about to be trained; from scratch, its vocabulary grows by ``ceil(m / width)`` rows.
        tokenizer: its tokenizer; from scratch, it gains the reserved tokens.
        m: number of canaries.
        input_ids: every training input, as tokenized for training.
        from_scratch: reserve new rows (else pick rows of the existing vocabulary that no input uses).
        seed: the training seed, as :class:`GradientCanaries` takes it.

    Raises:
        PrivauditError: fewer than ``m`` such coordinates, a frozen or tied embedding.
    """
    name, embedding = _input_embedding(model)
    width = embedding.embedding_dim
    reserved = 0
    if from_scratch:
        reserved = math.ceil(m / width)
        vocab = embedding.num_embeddings
        reserve_rows(model, tokenizer, reserved)
        rows = np.arange(vocab, vocab + reserved)
    else:
        never = [embedding.padding_idx, *tokenizer.all_special_ids]  # [PAD] and the special tokens, used or not
        rows = unused_rows(embedding.num_embeddings, input_ids, never)
    if int(input_ids.max()) >= embedding.num_embeddings or np.isin(input_ids.numpy(), rows).any():
        raise PrivauditError("gradient canary rows must be rows that no training input uses")
    return GradientCanaries(
        parameter=embedding.weight,
        name=name,
        rows=rows,
        m=m,
        reserved=reserved,
        seed=seed,
    )

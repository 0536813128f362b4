"""Book-Keeping DP-SGD: per-sample clipping with one backward pass (Bu, Wang, Zha, Karypis, ICML 2023).

Opacus's ghost clipping (``grad_sample_mode="ghost"``) finds the per-sample gradient norms in a first backward pass and
the clipped gradient in a second, on a reweighted loss. Book-Keeping (BK) needs only the first: a forward hook keeps
each layer's input ``a``, one ``torch.autograd.grad`` call returns the gradients ``g`` with respect to the layer
outputs, and from these two the engine computes both the per-sample norms (the ghost-norm trick) and the clipped sum
``sum_i c_i g_i^T a_i``, one product per layer. Autograd computes no weight gradients at all: it is asked only for
gradients with respect to layer outputs, and skips the weight branches of the graph.

This is a hand-written engine because neither reference implementation can be installed here: fastDP
(awslabs/fast-differential-privacy) and private-transformers are not published on PyPI. It covers the trainable
layers of Hugging Face classifiers (``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``; GPT-2's ``Conv1D``, Llama's
and Qwen2's RMSNorm) and refuses any other trainable module. Sampling (Poisson) and accounting stay Opacus's; see ``privaudit.training.train``.

What the engine assumes, and checks where it can: inputs are batch-first with one row per example (a lookup broadcast
over the batch, as Hugging Face's default ``position_ids``, is refused; training widens those), a weight used more
than once a step (tied, or a layer run twice) has its per-example gradients summed in full before the norm
(``privaudit.training.per_sample``; a recurrent layer that declares it runs once a time step, ``REPEATED_CALLS``, is
joined along the sequence axis instead, at no extra memory), nothing changes a recorded input or output in place, and
each loss depends on its own example only
(no batch statistics: BatchNorm is not a supported layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from privaudit.errors import PrivauditError
from privaudit.families.forward import per_example_lookups
from privaudit.training.per_sample import (
    collect_calls,
    is_conv1d,
    is_rms_norm,
    join_output_grads,
    per_sample_grads,
    rms_norm_rule,
    shared_rule,
)

if TYPE_CHECKING:
    from privaudit.training.gradient_canaries import GradientCanaries

# Given the per-sample clip factors, a layer's clipped gradients summed over the batch, by parameter.
ClippedSum = Callable[[torch.Tensor], dict[nn.Parameter, torch.Tensor]]


class _Shared:
    """Work that layers share within a step, keyed by the identity of tensors the step keeps alive.

    A self-attention's query, key and value read the same input; Hugging Face's word, position and token-type
    embeddings are summed, so autograd hands all three the same output gradient.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, torch.Tensor] = {}

    def gram(self, x: torch.Tensor, *, plus_one: bool = False) -> torch.Tensor:
        """``x_i x_i^T`` for every example, (n, T, T), plus one everywhere if asked (a bias's column of ones)."""
        key = ("gram", id(x), plus_one)
        if key not in self._cache:
            seq = x.reshape(x.shape[0], -1, x.shape[-1])
            gram = seq @ seq.mT
            self._cache[key] = gram + 1 if plus_one else gram
        return self._cache[key]

    def scaled(self, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Every example's rows times its clip factor, flattened to (n T, d_in)."""
        key = ("scaled", id(a))
        if key not in self._cache:
            seq = a.reshape(a.shape[0], -1, a.shape[-1])
            self._cache[key] = (seq * c[:, None, None]).reshape(-1, a.shape[-1])
        return self._cache[key]


LayerRule = Callable[[nn.Module, torch.Tensor, torch.Tensor, _Shared], tuple[torch.Tensor, ClippedSum]]


def _ghost_norm_is_cheaper(length: int, d_in: int, d_out: int) -> bool:
    # Per sample: the two Gram matrices cost about 2 T^2 (d_in + d_out), the gradient itself 2 T d_in d_out.
    return length * (d_in + d_out) < d_in * d_out


def _live_positions(x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Drop the positions where every example's output gradient is exactly zero, from ``x`` and ``g`` (n, T, .).

    They add nothing to any example's gradient, its norm or the clipped sum. In a classifier that reads one position
    ([CLS]), every layer after the last self-attention's keys and values has a gradient at that position only, so its
    norms and sums cost one position instead of T. Returns whether anything was dropped.
    """
    if g.shape[1] == 1:
        return x, g, False
    live = g.abs().amax(dim=(0, 2)) != 0  # a NaN stays live, so that it is not hidden
    if bool(live.all()):
        return x, g, False
    return x[:, live], g[:, live], True


def _linear(layer: nn.Linear, a: torch.Tensor, g: torch.Tensor, shared: _Shared) -> tuple[torch.Tensor, ClippedSum]:
    """Per-sample squared gradient norms of a Linear layer, and its clipped summed gradient.

    Inputs of shape (n, d_in) count as sequences of length 1. For a sequence of length T, the weight's per-sample
    gradient is G_i = g_i^T a_i, with ||G_i||_F^2 = sum_{t,s} (a_it . a_is)(g_it . g_is) (Li et al. 2022, "ghost
    norm"; Bu et al. 2023, eq. 4), or from G_i itself, whichever costs less (Bu et al. 2023, "mixed ghost norm").
    The bias's per-sample gradient is sum_t g_it, whose squared norm sum_{t,s} g_it . g_is joins the weight's as
    a column of ones appended to ``a`` would: one more in every entry of the Gram matrix of ``a``. Positions with no
    gradient in any example are left out first (:func:`_live_positions`).
    """
    n, d_in = a.shape[0], a.shape[-1]
    g = g.reshape(n, -1, g.shape[-1])
    a, g, sliced = _live_positions(a.reshape(n, -1, d_in), g)
    # A sliced input is a new tensor, which the step does not keep alive: it must not key the shared cache.
    own = _Shared() if sliced else shared
    d_out = g.shape[2]
    weight, bias = layer.weight, layer.bias
    train_weight, train_bias = weight.requires_grad, bias is not None and bias.requires_grad
    per_sample = None
    if train_weight and _ghost_norm_is_cheaper(g.shape[1], d_in, d_out):
        sq = (own.gram(a, plus_one=train_bias) * (g @ g.mT)).sum(dim=(1, 2))
    else:
        sq = g.new_zeros(n)
        if train_weight:
            per_sample = g.mT @ a  # (n, d_out, d_in)
            sq += per_sample.square().sum(dim=(1, 2))
        if train_bias:
            sq += g.sum(dim=1).square().sum(dim=1)

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        out = {}
        if per_sample is not None:
            out[weight] = (c @ per_sample.reshape(n, -1)).reshape(d_out, d_in)
        elif train_weight:
            out[weight] = g.reshape(-1, d_out).mT @ own.scaled(a, c)
        if train_bias:
            out[bias] = c @ g.sum(dim=1)
        return out

    return sq, clipped


def _embedding(
    layer: nn.Embedding, ids: torch.Tensor, g: torch.Tensor, shared: _Shared
) -> tuple[torch.Tensor, ClippedSum]:
    """Per-sample squared gradient norms of an Embedding, and its clipped summed gradient.

    Example i's gradient puts sum_{t: id_t = v} g_it in row v, so ||G_i||^2 = sum_{t,s: id_t = id_s} g_it . g_is: the
    Gram matrix of ``g`` (shared by the embeddings whose outputs are summed) masked to pairs of equal tokens. The
    padding token's row gets no gradient, as in ``nn.Embedding``'s own backward.
    """
    n = ids.shape[0]
    ids = ids.reshape(n, -1)
    same_token = ids[:, :, None] == ids[:, None, :]
    if layer.padding_idx is not None:
        same_token &= (ids != layer.padding_idx)[:, :, None]
    sq = (shared.gram(g) * same_token).sum(dim=(1, 2))

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        rows = (g.reshape(n, -1, layer.embedding_dim) * c[:, None, None]).reshape(-1, layer.embedding_dim)
        summed = torch.zeros_like(layer.weight).index_add_(0, ids.reshape(-1), rows)
        if layer.padding_idx is not None:
            summed[layer.padding_idx] = 0
        return {layer.weight: summed}

    return sq, clipped


def _layer_norm(
    layer: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor, shared: _Shared
) -> tuple[torch.Tensor, ClippedSum]:
    """Per-sample squared gradient norms of a LayerNorm, and its clipped summed gradient.

    The per-sample gradients are small (one value per normalised feature): weight ``sum_t g_t * xhat_t``, bias
    ``sum_t g_t``, with ``xhat`` the normalised input, recomputed here at the positions with a gradient only.
    """
    n, width = x.shape[0], math.prod(layer.normalized_shape)
    x, g, _ = _live_positions(x.reshape(n, -1, width), g.reshape(n, -1, width))
    grads = {}
    if layer.weight is not None and layer.weight.requires_grad:
        xhat = F.layer_norm(x.reshape(*x.shape[:2], *layer.normalized_shape), layer.normalized_shape, eps=layer.eps)
        grads[layer.weight] = (g * xhat.reshape(g.shape)).sum(dim=1)
    if layer.bias is not None and layer.bias.requires_grad:
        grads[layer.bias] = g.sum(dim=1)
    sq = sum((per_sample.square().sum(dim=1) for per_sample in grads.values()), start=x.new_zeros(n))

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        return {p: (c @ per_sample).reshape(p.shape) for p, per_sample in grads.items()}

    return sq, clipped


def _conv1d(layer: nn.Module, a: torch.Tensor, g: torch.Tensor, shared: _Shared) -> tuple[torch.Tensor, ClippedSum]:
    """GPT-2's ``Conv1D``: a Linear (``x @ W + b``) whose weight is stored as (d_in, d_out), so its sum transposes."""
    sq, clipped = _linear(layer, a, g, shared)

    def transposed(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        out = clipped(c)
        if layer.weight in out:
            out[layer.weight] = out[layer.weight].mT.contiguous()
        return out

    return sq, transposed


RULES: dict[type[nn.Module], LayerRule] = {nn.Linear: _linear, nn.Embedding: _embedding, nn.LayerNorm: _layer_norm}
EXTRA_LAYERS = "Conv1D (GPT-2), RMSNorm (Llama, Qwen2)"


def _rule(module: nn.Module) -> LayerRule | None:
    # Exact types: a subclass may change forward() and so what the rules assume about it.
    if type(module) in RULES:
        return RULES[type(module)]
    if is_conv1d(module):
        return _conv1d
    if is_rms_norm(module):
        return rms_norm_rule
    return None


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


def _check_layer(name: str, module: nn.Module) -> None:
    if _rule(module) is None:
        raise PrivauditError(
            f"book-keeping DP-SGD does not support the trainable layer '{name}' ({type(module).__name__}); "
            f"it supports {', '.join(t.__name__ for t in RULES)}, {EXTRA_LAYERS}: freeze it, or use Opacus's "
            "ghost clipping"
        )
    if isinstance(module, nn.Embedding) and (module.max_norm is not None or module.sparse or module.scale_grad_by_freq):
        raise PrivauditError(
            f"book-keeping DP-SGD does not support '{name}' (Embedding with max_norm, sparse or scale_grad_by_freq)"
        )


class BookKeepingDP:
    """DP-SGD gradients by Book-Keeping: clip each example's gradient to ``max_grad_norm``, sum, add noise.

    Hooks every trainable layer of ``model`` on creation. Each training step: a forward pass, then
    :meth:`step_gradients` with the per-example losses instead of ``loss.backward()``, then the optimiser's step;
    other forward passes go under ``torch.no_grad()``. The result in each ``p.grad`` matches Opacus's with
    ``loss_reduction="mean"``: the clipped sum plus N(0, (noise_multiplier * max_grad_norm)^2) noise, over the
    expected batch size.

    Args:
        model: a module whose trainable parameters all belong to ``nn.Linear``, ``nn.Embedding`` or ``nn.LayerNorm``
            layers, each called once a forward pass (or declaring ``REPEATED_CALLS``), on batch-first inputs with one row per example.
        noise_multiplier: noise standard deviation over the clipping norm.
        max_grad_norm: the per-example clipping norm C (flat: over all parameters together).
        expected_batch_size: sample rate times data set size; the clipped noisy sum is divided by it.
        generator: the noise's random number generator.

    Attributes:
        per_sample_norms_: after each :meth:`step_gradients`, every example's gradient norm before clipping.
        canaries: gradient canaries to insert into the clipped sum and observe in the noisy one, every step
            (``privaudit.training.gradient_canaries``); ``None`` for none.

    Raises:
        PrivauditError: a trainable layer of another type, a parameter shared between layers, or bad parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        generator: torch.Generator,
    ) -> None:
        if noise_multiplier < 0 or max_grad_norm <= 0 or expected_batch_size < 1:
            raise PrivauditError("book-keeping DP-SGD needs noise >= 0, max_grad_norm > 0, expected batch size >= 1")
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.expected_batch_size = expected_batch_size
        self.generator = generator
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.layers: dict[nn.Module, str] = {}
        owners: dict[int, list[nn.Module]] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            trainable = _trainable(module)
            if not trainable or module in self.layers:
                continue
            _check_layer(name, module)
            for p in trainable:
                owners.setdefault(id(p), []).append(module)
            self.layers[module] = name
        # Layers holding a weight another layer holds too (tied): their per-example gradients are summed in full.
        self.tied = {module for held in owners.values() if len(held) > 1 for module in held}
        self._calls: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]] = {}
        # Batch-wide lookups (positions) widened to one row per example, with the same values.
        self._handles = per_example_lookups(model) + [m.register_forward_hook(self._record) for m in self.layers]
        self.per_sample_norms_: torch.Tensor | None = None
        self.canaries: GradientCanaries | None = None

    def _record(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            # The input itself, not a detached copy: layers that read the same tensor share work (_Shared).
            self._calls.setdefault(module, []).append((inputs[0], output, (inputs[0]._version, output._version)))

    def step_gradients(self, per_sample_loss: torch.Tensor) -> None:
        """Backward once and set every trainable ``p.grad`` to the clipped, noised, averaged gradient.

        Args:
            per_sample_loss: one loss per example of the batch just run forward (``reduction="none"``), each depending
                on its own example only.

        Raises:
            PrivauditError: a layer called more than once, on inputs without one row per example, or whose input or
                output was changed in place; a layer's weight used outside its ``forward()``.
        """
        calls, self._calls = self._calls, {}
        if per_sample_loss.dim() != 1 or len(per_sample_loss) == 0:
            raise PrivauditError("step_gradients needs a 1-D, non-empty tensor of per-example losses")
        n = len(per_sample_loss)
        layers, outputs, counts = collect_calls(calls, self.layers, self.tied, n)
        # A trainable layer that did not run may still have its weight read directly (DeBERTa's relative positions):
        # asked for alongside, its gradient must come back None, or that use would go unclipped. Free when all ran.
        idle = [(name, p) for module, name in self.layers.items() if module not in calls for p in _trainable(module)]
        # Gradients with respect to the layer outputs only: autograd computes no weight gradient (Bu et al. 2023,
        # Algorithm 1: the weight gradient is the book-kept product, formed once, already clipped).
        grads = torch.autograd.grad(per_sample_loss.sum(), outputs + [p for _, p in idle], allow_unused=True)
        output_grads = join_output_grads(grads[: len(outputs)], outputs, counts, n)
        for (name, _), grad in zip(idle, grads[len(outputs) :]):
            if grad is not None:
                raise PrivauditError(f"the weights of '{name}' are used outside its forward(); book-keeping cannot")
        with torch.no_grad():
            sq_norms = per_sample_loss.new_zeros(n)
            clipped_sums = []
            shared = _Shared()
            summed: dict[nn.Parameter, torch.Tensor] = {}
            for (module, inputs, in_full), g in zip(layers, output_grads):
                if g is None:  # the layer did not reach the loss: a zero gradient
                    continue
                if in_full:  # every use's per-example contribution, summed before the norm
                    for p, grad in per_sample_grads(module, inputs, g).items():
                        summed[p] = summed[p] + grad if p in summed else grad
                    continue
                sq, clipped = _rule(module)(module, inputs, g, shared)
                sq_norms += sq
                clipped_sums.append(clipped)
            if summed:
                sq, clipped = shared_rule(summed, n)
                sq_norms += sq
                clipped_sums.append(clipped)
            norms = sq_norms.sqrt()
            # Opacus's flat clipping, 1e-6 included (opacus/optimizers/optimizer.py, clip_and_accumulate).
            self._set_grads(clipped_sums, (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0))
        self.per_sample_norms_ = norms

    def step_empty_batch(self) -> None:
        """Set every trainable ``p.grad`` for a Poisson batch that drew no example: noise only, over the batch size."""
        self._calls = {}
        with torch.no_grad():
            self._set_grads([], torch.zeros(0))

    def _noise_std(self) -> float:
        # The one place the engine's noise scale is set: a test may halve it to play a broken engine, while the
        # claimed noise multiplier (the accountant's, the canaries') stays what it was.
        return self.noise_multiplier * self.max_grad_norm

    def _set_grads(self, clipped_sums: list[ClippedSum], clip_factors: torch.Tensor) -> None:
        # Opacus adds N(0, std^2) noise to the clipped sum, then divides by the expected batch size; dividing the
        # factors and the noise's std first gives the same gradient with two passes over it fewer.
        summed: dict[nn.Parameter, torch.Tensor] = {}
        clip_factors = clip_factors / self.expected_batch_size
        for clipped in clipped_sums:
            summed.update(clipped(clip_factors))
        std = self._noise_std() / self.expected_batch_size
        canaries = self.canaries
        for p in self.params:  # a fixed order, so that a seeded generator gives the same noise
            grad = summed.get(p)
            grad = torch.zeros_like(p) if grad is None else grad
            is_canaries = canaries is not None and p is canaries.parameter
            if is_canaries:  # the clipped sum, before the noise (Nasr et al. 2023: Dirac canaries)
                canaries.insert(grad, scale=1 / self.expected_batch_size)
            if std > 0:
                if canaries is None:
                    grad += torch.normal(0.0, std, size=p.shape, generator=self.generator, device=p.device)
                else:
                    canaries.add_noise(grad, p, std, self.generator)
            if is_canaries:  # the noisy sum, before the optimiser's update
                canaries.observe(grad, scale=self.expected_batch_size)
            p.grad = grad

    def detach(self) -> None:
        """Remove the hooks: the model is a plain module again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._calls = {}

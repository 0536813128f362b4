"""Book-Keeping DP-SGD: per-sample clipping with one backward pass (Bu, Wang, Zha, Karypis, ICML 2023).

Opacus's ghost clipping (``grad_sample_mode="ghost"``) finds the per-sample gradient norms in a first backward pass and
the clipped gradient in a second, on a reweighted loss. Book-Keeping (BK) needs only the first: a forward hook keeps
each layer's input ``a``, one ``torch.autograd.grad`` call returns the gradients ``g`` with respect to the layer
outputs, and from these two the engine computes both the per-sample norms (the ghost-norm trick) and the clipped sum
``sum_i c_i g_i^T a_i``, one product per layer. Autograd computes no weight gradients at all: it is asked only for
gradients with respect to layer outputs, and skips the weight branches of the graph.

This is a hand-written engine because neither reference implementation can be installed here: fastDP
(awslabs/fast-differential-privacy) and private-transformers are not published on PyPI. It covers the trainable
layers of Hugging Face BERT / MiniLM classifiers (``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``) and refuses any
other trainable module. Sampling (Poisson) and accounting stay Opacus's; see ``privaudit.train``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from privaudit.errors import PrivauditError

# Given the per-sample clip factors, a layer's clipped gradients summed over the batch, by parameter.
ClippedSum = Callable[[torch.Tensor], dict[nn.Parameter, torch.Tensor]]
LayerRule = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ClippedSum]]


def _ghost_norm_is_cheaper(length: int, d_in: int, d_out: int) -> bool:
    # Per sample: the two Gram matrices cost about 2 T^2 (d_in + d_out), the gradient itself 2 T d_in d_out.
    return length * (d_in + d_out) < d_in * d_out


def _linear(layer: nn.Linear, a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ClippedSum]:
    """Per-sample squared gradient norms of a Linear layer, and its clipped summed gradient.

    Inputs of shape (n, d_in) count as sequences of length 1. For a sequence of length T, the weight's per-sample
    gradient is G_i = g_i^T a_i, with ||G_i||_F^2 = sum_{t,s} (a_it . a_is)(g_it . g_is) (Li et al. 2022, "ghost
    norm"; Bu et al. 2023, eq. 4), or from G_i itself, whichever costs less (Bu et al. 2023, "mixed ghost norm").
    """
    n = a.shape[0]
    a = a.reshape(n, -1, a.shape[-1])
    g = g.reshape(n, -1, g.shape[-1])
    length, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    weight, bias = layer.weight, layer.bias
    train_bias = bias is not None and bias.requires_grad
    sq = a.new_zeros(n)
    per_sample = None
    if weight.requires_grad:
        if _ghost_norm_is_cheaper(length, d_in, d_out):
            sq += ((a @ a.mT) * (g @ g.mT)).sum(dim=(1, 2))
        else:
            per_sample = g.mT @ a  # (n, d_out, d_in)
            sq += per_sample.square().sum(dim=(1, 2))
    g_sum = g.sum(dim=1) if train_bias else None
    if g_sum is not None:
        sq += g_sum.square().sum(dim=1)

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        out = {}
        if weight.requires_grad:
            if per_sample is not None:
                out[weight] = (c @ per_sample.reshape(n, -1)).reshape(d_out, d_in)
            else:
                out[weight] = (g * c[:, None, None]).reshape(-1, d_out).mT @ a.reshape(-1, d_in)
        if g_sum is not None:
            out[bias] = c @ g_sum
        return out

    return sq, clipped


def _embedding(layer: nn.Embedding, ids: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ClippedSum]:
    """Per-sample squared gradient norms of an Embedding, and its clipped summed gradient.

    Example i's gradient has one row per distinct token it contains, the sum of ``g`` over that token's positions:
    the rows are gathered by (example, token) pairs, in time linear in the number of tokens. The padding token's row
    gets no gradient, as in ``nn.Embedding``'s own backward.
    """
    n, vocab = ids.shape[0], layer.num_embeddings
    ids = ids.reshape(-1)
    g = g.reshape(-1, layer.embedding_dim)
    example = torch.arange(n, device=ids.device).repeat_interleave(ids.numel() // n)
    if layer.padding_idx is not None:
        keep = ids != layer.padding_idx
        ids, g, example = ids[keep], g[keep], example[keep]
    pairs, where = torch.unique(example * vocab + ids, return_inverse=True)
    rows = g.new_zeros(len(pairs), g.shape[1]).index_add_(0, where, g)
    row_example, row_token = pairs // vocab, pairs % vocab
    sq = g.new_zeros(n).index_add_(0, row_example, rows.square().sum(dim=1))

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        summed = torch.zeros_like(layer.weight).index_add_(0, row_token, rows * c[row_example, None])
        return {layer.weight: summed}

    return sq, clipped


def _layer_norm(layer: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ClippedSum]:
    """Per-sample squared gradient norms of a LayerNorm, and its clipped summed gradient.

    The per-sample gradients are small (one value per normalised feature): weight ``sum_t g_t * xhat_t``, bias
    ``sum_t g_t``, with ``xhat`` the normalised input, recomputed here.
    """
    n, width = x.shape[0], math.prod(layer.normalized_shape)
    xhat = F.layer_norm(x, layer.normalized_shape, eps=layer.eps)
    g = g.reshape(n, -1, width)
    grads = {}
    if layer.weight is not None and layer.weight.requires_grad:
        grads[layer.weight] = (g * xhat.reshape(n, -1, width)).sum(dim=1)
    if layer.bias is not None and layer.bias.requires_grad:
        grads[layer.bias] = g.sum(dim=1)
    sq = sum((per_sample.square().sum(dim=1) for per_sample in grads.values()), start=x.new_zeros(n))

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        return {p: (c @ per_sample).reshape(p.shape) for p, per_sample in grads.items()}

    return sq, clipped


RULES: dict[type[nn.Module], LayerRule] = {nn.Linear: _linear, nn.Embedding: _embedding, nn.LayerNorm: _layer_norm}


def _check_layer(name: str, module: nn.Module) -> None:
    # Exact types: a subclass may change forward() and so what the rules assume about it.
    if type(module) not in RULES:
        raise PrivauditError(
            f"book-keeping DP-SGD does not support the trainable layer '{name}' ({type(module).__name__}); "
            f"it supports {', '.join(t.__name__ for t in RULES)}: freeze it, or use --grad-sample-mode ghost"
        )
    if isinstance(module, nn.Embedding) and (module.max_norm is not None or module.sparse or module.scale_grad_by_freq):
        raise PrivauditError(
            f"book-keeping DP-SGD does not support '{name}' (Embedding with max_norm, sparse or scale_grad_by_freq)"
        )


class BookKeepingDP:
    """DP-SGD gradients by Book-Keeping: clip each example's gradient to ``max_grad_norm``, sum, add noise.

    Hooks every trainable layer of ``model`` on creation. Each training step: a forward pass, then
    :meth:`step_gradients` with the per-example losses instead of ``loss.backward()``, then the optimiser's step.
    The result in each ``p.grad`` matches Opacus's with ``loss_reduction="mean"``: the clipped sum plus
    N(0, (noise_multiplier * max_grad_norm)^2) noise, over the expected batch size.

    Args:
        model: a module whose trainable parameters all belong to ``nn.Linear``, ``nn.Embedding`` or ``nn.LayerNorm``
            layers, each called once a forward pass, on batch-first inputs with one row per example.
        noise_multiplier: noise standard deviation over the clipping norm.
        max_grad_norm: the per-example clipping norm C (flat: over all parameters together).
        expected_batch_size: sample rate times data set size; the clipped noisy sum is divided by it.
        generator: the noise's random number generator.

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
        owned: set[int] = set()
        for name, module in model.named_modules():
            trainable = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not trainable:
                continue
            _check_layer(name, module)
            if owned & {id(p) for p in trainable}:
                raise PrivauditError(f"book-keeping DP-SGD does not support shared (tied) weights, as in '{name}'")
            owned.update(id(p) for p in trainable)
            self.layers[module] = name
        self._calls: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
        self._handles = [module.register_forward_hook(self._record) for module in self.layers]
        self.per_sample_norms_: torch.Tensor | None = None

    def _record(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            self._calls.setdefault(module, []).append((inputs[0].detach(), output, output._version))

    def step_gradients(self, per_sample_loss: torch.Tensor) -> None:
        """Backward once and set every trainable ``p.grad`` to the clipped, noised, averaged gradient.

        Args:
            per_sample_loss: one loss per example of the batch just run forward (``reduction="none"``), each depending
                on its own example only.

        Raises:
            PrivauditError: a layer called more than once, on inputs without one row per example, or whose output
                was changed in place.
        """
        calls, self._calls = self._calls, {}
        n = per_sample_loss.shape[0]
        if per_sample_loss.dim() != 1 or n == 0:
            raise PrivauditError("step_gradients needs a 1-D, non-empty tensor of per-example losses")
        layers, outputs = [], []
        for module, records in calls.items():
            name = self.layers[module]
            if len(records) > 1:
                raise PrivauditError(f"book-keeping DP-SGD needs each layer called once a step; '{name}' was not")
            inputs, output, version = records[0]
            if inputs.shape[0] != n or output.shape[0] != n:
                raise PrivauditError(
                    f"'{name}' ran on a batch of {inputs.shape[0]}, not one row per example ({n}): pass per-example "
                    "inputs (e.g. explicit position_ids and token_type_ids) so each example's gradient can be found"
                )
            if output._version != version:
                raise PrivauditError(f"the output of '{name}' was changed in place; book-keeping cannot see its grad")
            layers.append((module, inputs))
            outputs.append(output)
        # Gradients with respect to the layer outputs only: autograd computes no weight gradient (Bu et al. 2023,
        # Algorithm 1: the weight gradient is the book-kept product, formed once, already clipped).
        output_grads = torch.autograd.grad(per_sample_loss.sum(), outputs, allow_unused=True)
        with torch.no_grad():
            sq_norms = per_sample_loss.new_zeros(n)
            clipped_sums = []
            for (module, inputs), g in zip(layers, output_grads):
                if g is None:  # the layer did not reach the loss: a zero gradient
                    continue
                sq, clipped = RULES[type(module)](module, inputs, g)
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

    def _set_grads(self, clipped_sums: list[ClippedSum], clip_factors: torch.Tensor) -> None:
        summed: dict[nn.Parameter, torch.Tensor] = {}
        for clipped in clipped_sums:
            summed.update(clipped(clip_factors))
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:  # a fixed order, so that a seeded generator gives the same noise
            grad = summed.get(p)
            grad = torch.zeros_like(p) if grad is None else grad.reshape(p.shape)
            if std > 0:
                grad = grad + torch.normal(0.0, std, size=p.shape, generator=self.generator, device=p.device)
            p.grad = grad / self.expected_batch_size

    def detach(self) -> None:
        """Remove the hooks: the model is a plain module again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._calls = {}

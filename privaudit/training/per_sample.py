"""Per-example gradients written out in full, for book-keeping's less common layers and for shared weights.

Book-keeping (``privaudit.training.bookkeeping``) never forms a per-example gradient where it can avoid it. Two cases
need them here:

- RMSNorm (Llama, Qwen2): ``y = w * x / rms(x)``; its per-example weight gradient ``sum_t g_t * xhat_t`` has one value
  per feature, as LayerNorm's, so writing it out costs little.
- A weight used more than once a step: tied (one tensor in two layers) or a layer run twice (ALBERT's shared layers).
  Its per-example gradient is the sum of every use's contribution, and the norm is that sum's: the ghost-norm trick
  (norms from Gram matrices, one use at a time) would miss the cross terms. Each use's contribution is formed and
  summed before the norm (Bu et al. 2023 leave tied weights out; this is the direct way, at the memory of one
  gradient per example for those weights only).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from privaudit.errors import PrivauditError

ClippedSum = Callable[[torch.Tensor], dict[nn.Parameter, torch.Tensor]]
RMS_NORMS = ("LlamaRMSNorm", "Qwen2RMSNorm")  # y = weight * x / rms(x), computed in fp32 (no 1 + weight, no bias)


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): ``x @ W + b``, a Linear whose weight is stored transposed."""
    return type(module).__name__ == "Conv1D" and type(module).__module__ == "transformers.pytorch_utils"


def is_rms_norm(module: nn.Module) -> bool:
    """Llama's and Qwen2's RMSNorm, whose forward :func:`rms_norm_grads` follows."""
    return type(module).__name__ in RMS_NORMS and type(module).__module__.startswith("transformers.models.")


def rms_norm_grads(layer: nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Per-example weight gradient of an RMSNorm: ``sum_t g_t * x_t / sqrt(mean(x_t^2) + eps)``, shape (n, d)."""
    n, width = x.shape[0], x.shape[-1]
    x = x.reshape(n, -1, width).float()
    xhat = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + layer.variance_epsilon)
    if not layer.weight.requires_grad:
        return {}
    return {layer.weight: (g.reshape(n, -1, width).float() * xhat).sum(dim=1).to(layer.weight.dtype)}


def rms_norm_rule(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, _shared) -> tuple[torch.Tensor, ClippedSum]:
    """Book-keeping's rule for RMSNorm: squared per-example norms and the clipped sum."""
    grads = rms_norm_grads(layer, x, g)
    sq = sum((ps.square().sum(dim=1) for ps in grads.values()), start=x.new_zeros(x.shape[0]))

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        return {p: (c @ ps).reshape(p.shape) for p, ps in grads.items()}

    return sq, clipped


def per_sample_grads(module: nn.Module, inputs: torch.Tensor, g: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Every trainable parameter's per-example gradient from one call of ``module``, shape ``(n, *p.shape)``.

    Supports the layers book-keeping does: Linear, Conv1D, Embedding, LayerNorm, RMSNorm.
    """
    n = inputs.shape[0]
    out: dict[nn.Parameter, torch.Tensor] = {}
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if isinstance(module, nn.Linear) or is_conv1d(module):
        a = inputs.reshape(n, -1, inputs.shape[-1])
        gs = g.reshape(n, -1, g.shape[-1])
        if weight.requires_grad:
            out[weight] = a.mT @ gs if is_conv1d(module) else gs.mT @ a
        if bias is not None and bias.requires_grad:
            out[bias] = gs.sum(dim=1)
    elif isinstance(module, nn.Embedding):
        ids = inputs.reshape(n, -1)
        rows = g.reshape(n, -1, module.embedding_dim)
        if module.padding_idx is not None:
            rows = rows * (ids != module.padding_idx)[:, :, None]
        vocab = module.num_embeddings
        flat = (ids + vocab * torch.arange(n, device=ids.device)[:, None]).reshape(-1)
        full = rows.new_zeros(n * vocab, module.embedding_dim).index_add_(0, flat, rows.reshape(-1, rows.shape[-1]))
        out[weight] = full.reshape(n, vocab, module.embedding_dim)
    elif isinstance(module, nn.LayerNorm):
        width = weight.numel() if weight is not None else inputs.shape[-1]
        x, gs = inputs.reshape(n, -1, width), g.reshape(n, -1, width)
        if weight is not None and weight.requires_grad:
            xhat = torch.nn.functional.layer_norm(x, (width,), eps=module.eps)
            out[weight] = (gs * xhat).sum(dim=1).reshape(n, *weight.shape)
        if bias is not None and bias.requires_grad:
            out[bias] = gs.sum(dim=1).reshape(n, *bias.shape)
    elif is_rms_norm(module):
        out.update(rms_norm_grads(module, inputs, g))
    else:  # _check_layer refused it when the engine was made
        raise TypeError(f"no per-example gradient for {type(module).__name__}")
    return out


def shared_rule(per_sample: dict[nn.Parameter, torch.Tensor], n: int) -> tuple[torch.Tensor, ClippedSum]:
    """Norms and clipped sum from per-example gradients already summed over every use of each weight."""
    start = next(iter(per_sample.values())).new_zeros(n) if per_sample else torch.zeros(n)
    sq = sum((ps.reshape(n, -1).square().sum(dim=1) for ps in per_sample.values()), start=start)

    def clipped(c: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        return {p: (c @ ps.reshape(n, -1)).reshape(p.shape) for p, ps in per_sample.items()}

    return sq, clipped


# A layer that sets this attribute true (a recurrent cell's hidden-to-hidden Linear, privaudit.models.recurrent) may
# run several times a step. Its per-example gradient is the sum over the calls, sum_c g_c^T a_c: the rules compute it
# from the calls' inputs and output gradients joined along the sequence axis, as if one call had seen them all.
REPEATED_CALLS = "privaudit_repeated_calls"


def join_inputs(module: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    """One layer's inputs over its calls, joined along the sequence axis (token ids: flattened per example)."""
    if len(inputs) == 1:
        return inputs[0]
    n = inputs[0].shape[0]
    if isinstance(module, nn.Embedding):
        return torch.cat([x.reshape(n, -1) for x in inputs], dim=1)
    return torch.cat([x.reshape(n, -1, x.shape[-1]) for x in inputs], dim=1)


def join_output_grads(
    grads: tuple[torch.Tensor | None, ...], outputs: list[torch.Tensor], counts: list[int], n: int
) -> list[torch.Tensor | None]:
    """The layers' output gradients, a repeated layer's joined along the sequence axis as its inputs were
    (:func:`join_inputs`); ``counts`` gives each layer's number of calls, in the order of ``outputs``."""
    output_grads, start = [], 0
    for count in counts:
        chunk, start = grads[start : start + count], start + count
        if count == 1 or all(g is None for g in chunk):
            output_grads.append(chunk[0] if count == 1 else None)
        else:
            parts = [torch.zeros_like(o) if g is None else g for g, o in zip(chunk, outputs[start - count : start])]
            output_grads.append(torch.cat([g.reshape(n, -1, g.shape[-1]) for g in parts], dim=1))
    return output_grads


Call = tuple[torch.Tensor, torch.Tensor, tuple[int, int]]  # a layer's input, its output, and their versions then


def collect_calls(
    calls: dict[nn.Module, list[Call]], names: dict[nn.Module, str], tied: set[nn.Module], n: int
) -> tuple[list[tuple[nn.Module, torch.Tensor, bool]], list[torch.Tensor], list[int]]:
    """One step's recorded layer calls, checked, as ``(layers, outputs, counts)``.

    ``layers`` holds ``(module, inputs, in_full)``: ``in_full`` for a layer run more than once or holding a tied weight
    (its per-example gradients are summed in full before the norm); a layer that declares :data:`REPEATED_CALLS` has
    its calls joined into one entry instead. ``counts`` gives each entry's number of outputs.

    Raises:
        PrivauditError: a call without one row per example, or whose input or output changed in place.
    """
    layers, outputs, counts = [], [], []
    for module, records in calls.items():
        name = names[module]
        for inputs, output, versions in records:
            if inputs.shape[0] != n or output.shape[0] != n:
                raise PrivauditError(
                    f"'{name}' ran once for the whole batch ({inputs.shape[0]} row, not one per example), so "
                    "no example's own gradient can be found (DeBERTa's relative positions do this); freeze it: "
                    "--train-layers head, or --lora-rank"
                )
            if (inputs._version, output._version) != versions:
                raise PrivauditError(f"the input or output of '{name}' was changed in place after the layer ran")
        if len(records) > 1 and getattr(module, REPEATED_CALLS, False) and module not in tied:
            # A recurrent layer's calls joined along the sequence axis, as if one call had seen them all.
            layers.append((module, join_inputs(module, [r[0] for r in records]), False))
            outputs.extend(r[1] for r in records)
            counts.append(len(records))
            continue
        for inputs, output, _ in records:
            # A layer run twice a step (ALBERT's shared layers) or holding a tied weight: summed in full.
            layers.append((module, inputs, len(records) > 1 or module in tied))
            outputs.append(output)
            counts.append(1)
    return layers, outputs, counts

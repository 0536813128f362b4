"""Which parameters a run trains: all, the classification head, the last N transformer layers, or LoRA adapters.

Training fewer parameters is the usual way to keep utility under DP-SGD: the noise is added to every trained
coordinate, so its norm grows with the square root of their number (Yu et al. 2022, "Differentially private
fine-tuning of language models"; Li et al. 2022).

- ``all``: every parameter (the default).
- ``head``: the classification head, and for BERT-like models the pooler (the dense layer on [CLS] that feeds the
  classifier, and is part of the classification path, not of the encoder's token representations); everything under
  the base model except its pooler is frozen.
- ``last:N``: the last N transformer layers of the encoder, plus the head.
- LoRA (``lora_rank > 0``, through ``peft``): rank-``r`` adapters on the named Linear layers (``query`` and ``value`` by
  default, as Hu et al. 2021 do for attention), plus the head; the pretrained weights are frozen. Before saving,
  :func:`merge_lora` folds each adapter into its base weight (``W + B A * alpha / r``), so the saved model is a plain
  classifier with the base architecture, which :class:`privaudit.target.Target` loads like any other.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from torch import nn

from privaudit.errors import PrivauditError

DEFAULT_LORA_TARGETS: tuple[str, ...] = ()  # the family's own (privaudit.families.adapter)
_LAST = re.compile(r"last:(\d+)")


@dataclass(frozen=True)
class LayerSpec:
    """A parsed ``--train-layers`` value: ``kind`` is ``all``, ``head`` or ``last`` (with ``n`` layers)."""

    kind: str
    n: int = 0


def parse_train_layers(spec: str) -> LayerSpec:
    """Parse ``all``, ``head`` or ``last:N`` (N >= 1).

    Raises:
        PrivauditError: anything else.
    """
    text = str(spec).strip().lower()
    if text in ("all", "head"):
        return LayerSpec(text)
    match = _LAST.fullmatch(text)
    if match and int(match.group(1)) >= 1:
        return LayerSpec("last", int(match.group(1)))
    raise PrivauditError(f"--train-layers '{spec}' is not all, head or last:N (N >= 1), e.g. last:2")


def _base_prefix(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or not isinstance(getattr(model, prefix, None), nn.Module):
        raise PrivauditError(
            f"--train-layers: {type(model).__name__} has no base model to freeze (no '{prefix or 'base_model_prefix'}')"
        )
    return prefix


def transformer_layers(model: nn.Module) -> tuple[str, int]:
    """The name of the encoder's list of transformer layers (e.g. ``bert.encoder.layer``) and its length.

    The longest ``nn.ModuleList`` inside the base model: BERT, RoBERTa, MiniLM keep their layers in
    ``encoder.layer``, DistilBERT in ``transformer.layer``.

    Raises:
        PrivauditError: the model has no such list.
    """
    prefix = _base_prefix(model)
    lists = [(name, len(m)) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    lists = [(name, n) for name, n in lists if name.startswith(prefix + ".")]
    if not lists:
        raise PrivauditError(f"--train-layers last:N: {type(model).__name__} has no list of transformer layers")
    return max(lists, key=lambda item: item[1])


def _is_head(name: str, prefix: str) -> bool:
    return not name.startswith(prefix + ".") or name.startswith(f"{prefix}.pooler.")


def freeze_for(model: nn.Module, spec: LayerSpec) -> None:
    """Set ``requires_grad`` so that only the parameters ``spec`` names train.

    Raises:
        PrivauditError: a model without a base model to freeze, or without ``N`` transformer layers for ``last:N``.
    """
    if spec.kind == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return
    prefix = _base_prefix(model)
    trained_layers: tuple[str, ...] = ()
    if spec.kind == "last":
        layers, count = transformer_layers(model)
        if spec.n > count:
            raise PrivauditError(
                f"--train-layers last:{spec.n}: the model has {count} transformer layers ({layers}); "
                f"use last:1 to last:{count}, or all"
            )
        trained_layers = tuple(f"{layers}.{i}." for i in range(count - spec.n, count))
    for name, p in model.named_parameters():
        p.requires_grad_(_is_head(name, prefix) or name.startswith(trained_layers))


def _adaptable(module: nn.Module) -> bool:
    # nn.Linear, or transformers' Conv1D (GPT-2's projections: a Linear with its weight transposed), which peft
    # adapts with fan_in_fan_out.
    return type(module) is nn.Linear or (
        type(module).__name__ == "Conv1D" and type(module).__module__ == "transformers.pytorch_utils"
    )


def apply_lora(model: nn.Module, *, rank: int, alpha: float | None, targets: tuple[str, ...]) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (``peft``) on the Linear layers named ``targets``; train them and the head.

    Args:
        model: a Hugging Face sequence classifier.
        rank: the adapters' rank r (>= 1).
        alpha: LoRA's alpha; the update is scaled by alpha / r. Default ``2 * rank``.
        targets: module names (last component) to adapt, e.g. ``("query", "value")``.

    Returns:
        The peft model; :func:`merge_lora` turns it back into a plain classifier.

    Raises:
        PrivauditError: ``peft`` missing, a bad rank, or no Linear layer of that name for peft to target.
    """
    if rank < 1:
        raise PrivauditError(f"--lora-rank must be at least 1, not {rank}")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise PrivauditError("--lora-rank needs peft: pip install 'privaudit[lora]' (or pip install peft)") from err
    names = set(targets)
    found = [name for name, m in model.named_modules() if name.rpartition(".")[2] in names and _adaptable(m)]
    if not found:
        raise PrivauditError(
            f"--lora-rank: {type(model).__name__} has no Linear layer named {' or '.join(sorted(names))} for peft to "
            "target; name this architecture's attention projections with --lora-targets"
        )
    prefix = _base_prefix(model)
    config = LoraConfig(
        r=rank,
        lora_alpha=float(alpha if alpha is not None else 2 * rank),
        lora_dropout=0.0,  # dropout would apply a second, per-example mask before A: book-keeping would still work
        target_modules=sorted(names),
        fan_in_fan_out=any(not isinstance(m, nn.Linear) for name, m in model.named_modules() if name in found),
        bias="none",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' deprecation notes from inside peft
            wrapped = get_peft_model(model, config)
    except (ValueError, TypeError) as err:
        raise PrivauditError(f"--lora-rank: peft cannot adapt {type(model).__name__}: {err}") from err
    # get_peft_model freezes everything but the adapters; the freshly initialised head (and pooler) must train too.
    inner = wrapped.get_base_model()
    for name, p in inner.named_parameters():
        if "lora_" in name or _is_head(name, prefix):
            p.requires_grad_(True)
    return wrapped


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into their base weights and return the plain model (unchanged if it has none)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that train, in the model's order (a peft model's as its base model names them)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [name for name, p in inner.named_parameters() if p.requires_grad]

"""A ``--base`` model's classification head: kept when it already classifies the data's labels, else replaced."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from privaudit.errors import PrivauditError


def _base_labels(base: Path) -> list[str] | None:
    """The base's labels in id order when it is a sequence classifier, else ``None``."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise PrivauditError(f"--base {base}: unreadable model config ({str(err).splitlines()[0]})") from err
    if not any(str(a).endswith("ForSequenceClassification") for a in config.architectures or []):
        return None
    return [str(config.id2label[i]) for i in sorted(config.id2label)]


def output_layer(model: nn.Module, n_labels: int) -> nn.Module:
    """The head's last layer: the last Linear outside the base model with one output per label (GPT-2: ``score``).

    Raises:
        PrivauditError: no such layer.
    """
    prefix = getattr(model, "base_model_prefix", "")
    found = None
    for name, module in model.named_modules():
        if prefix and name.startswith(prefix + "."):
            continue
        if isinstance(module, nn.Linear) and module.out_features == n_labels:
            found = module
    if found is None:
        raise PrivauditError(f"{type(model).__name__}: no classification head with {n_labels} outputs found")
    return found


def load_base(base: Path, label_names: list[str], tokenizer) -> tuple[nn.Module, object, list[str]]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (base / "config.json").is_file():
        raise PrivauditError(f"{base}: --base must be a local model directory with config.json")
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True, trust_remote_code=False)
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    own = _base_labels(base)
    keep = own is not None and len(set(own)) == len(own) and sorted(own) == sorted(label_names)
    common = {"local_files_only": True, "trust_remote_code": False, "use_safetensors": True}
    notes = []
    if keep:
        model = AutoModelForSequenceClassification.from_pretrained(base, **common)
        order = [own.index(name) for name in label_names]  # new id i is the base's id order[i]
        if order != list(range(len(order))):
            layer = output_layer(model, len(label_names))
            with torch.no_grad():
                layer.weight.copy_(layer.weight[order])
                if layer.bias is not None:
                    layer.bias.copy_(layer.bias[order])
        model.config.id2label, model.config.label2id = id2label, label2id
        return model, tokenizer, notes
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(label_names), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True, **common
    )
    if own is not None:
        # Same number of labels, other names: from_pretrained would keep rows that mean other classes. Draw afresh.
        # (transformers' _init_weights skips modules it already initialised, so the head is drawn here, as its
        # initialisation does: normal(0, initializer_range) weights, zero biases.)
        prefix = model.base_model_prefix
        std = float(getattr(model.config, "initializer_range", 0.02))
        with torch.no_grad():
            for name, module in model.named_modules():
                if name.startswith(prefix) or not isinstance(module, nn.Linear):
                    continue
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
        shown = ", ".join(own[:6]) + (", ..." if len(own) > 6 else "")
        notes.append(
            f"--base {base}: its classification head (labels {shown}) does not match the data's labels; "
            "a new head is initialised"
        )
    return model, tokenizer, notes

"""The load self-check: privaudit's batched, padded logits must be the model's own, text by text.

privaudit scores texts in length-sorted, right-padded batches; the model's own function is its forward pass on one
unpadded text. If padding, pooling or position numbering went wrong for a family (a decoder without a pad token, a
tokenizer whose pad id is not the model's), the two differ, and privaudit would audit a function the model does not
compute. A few forward passes at load rule that out, for every family and the generic fallback alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from privaudit.errors import PrivauditError
from privaudit.families.adapter import adapter_for

TOLERANCE = 1e-4
PROBE_TOKENS = 16  # the probes' truncation: within any model's positions, and enough to pad the short ones
# Different lengths, so the batch pads; a digit run, as canaries hold; words any vocabulary splits somehow.
PROBES = (
    "ok",
    "my pin code is 4 0 7 1",
    "the quick brown fox jumps over the lazy dog, twice, and then once more for good measure",
    "hello there",
)


def own_logits(model: nn.Module, tokenizer, texts: Sequence[str], *, max_length: int) -> np.ndarray:
    """The model's own forward on each text alone: unpadded, no attention mask, nothing privaudit chooses."""
    rows = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            logits = model(input_ids=torch.tensor([ids], device=device)).logits
            rows.append(logits[0].double().cpu().numpy())
    return np.stack(rows)


def self_check(
    *,
    model: nn.Module,
    where: str,
    own: np.ndarray,
    padded_logits: Callable[[Sequence[str]], np.ndarray],
    texts: Sequence[str] = PROBES,
) -> float:
    """Compare privaudit's padded, batched logits for ``texts`` with the model's own (``own``, from :func:`own_logits`).

    Returns:
        The largest absolute difference.

    Raises:
        PrivauditError: a difference above :data:`TOLERANCE`, naming the family (or the unknown ``model_type``).
    """
    mine = padded_logits(list(texts))
    diff = float(np.max(np.abs(mine - own))) if own.size else 0.0
    if not diff <= TOLERANCE:  # NaN fails too
        adapter = adapter_for(model)
        family = (
            f"the {adapter.name} model"
            if adapter.known
            else f"model_type '{getattr(getattr(model, 'config', None), 'model_type', None)}', which privaudit has no adapter for,"
        )
        raise PrivauditError(
            f"{where}: self-check failed: privaudit's padded, batched logits for {family} differ from the model's own "
            f"unpadded forward by {diff:.3g} (more than {TOLERANCE:g}); privaudit will not audit a function the model "
            "does not compute (check pad_token_id in config.json against the tokenizer's pad token)"
        )
    return diff

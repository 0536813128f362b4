"""How privaudit runs a family's model: its pad token and padding side, and per-example lookups for DP-SGD."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.utils.hooks import RemovableHandle

from privaudit.errors import PrivauditError
from privaudit.families.adapter import FamilyAdapter, adapter_for


def pad_token_id(model: nn.Module, tokenizer) -> int:
    """The id privaudit pads with: a decoder's ``config.pad_token_id`` (its head pools by it), else the tokenizer's."""
    config_pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    if adapter_for(model).needs_pad_token and config_pad is not None:
        return int(config_pad)
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(config_pad or 0)


def prepare(model: nn.Module, tokenizer, *, where: str) -> str | None:
    """Set the tokenizer to pad on the right and, for a decoder without one, choose its pad token.

    A decoder's classification head finds each row's last token as the last one that is not ``config.pad_token_id``;
    without one it cannot score a padded batch. The pad token chosen is the tokenizer's own, else its end-of-text
    token, set in both the config and the tokenizer, so that a model privaudit saves records it.

    Args:
        model: the classifier.
        tokenizer: its tokenizer (changed in place).
        where: the model directory or flag, for messages.

    Returns:
        A line saying which pad token was chosen, or ``None`` when nothing was chosen.

    Raises:
        PrivauditError: a decoder whose tokenizer has neither a pad nor an end-of-text token.
    """
    adapter: FamilyAdapter = adapter_for(model)
    tokenizer.padding_side = adapter.padding_side
    note = None
    if adapter.needs_pad_token:
        pad = model.config.pad_token_id
        if pad is None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            if pad is None:
                raise PrivauditError(
                    f"{where}: a {adapter.name} classifier pools its last non-pad token, and neither its config nor its "
                    "tokenizer names a pad or end-of-text token; set pad_token_id in config.json"
                )
            model.config.pad_token_id = int(pad)
            token = tokenizer.convert_ids_to_tokens(int(pad))
            note = (
                f"{where}: {adapter.name} has no pad token; padding with '{token}' (id {pad}), recorded in config.json"
            )
        if tokenizer.pad_token_id != pad:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(pad))
    elif tokenizer.pad_token_id is None:
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        if pad is None:
            raise PrivauditError(f"{where}: the tokenizer has no pad token; set pad_token in tokenizer_config.json")
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(pad))
    return note


def per_example_lookups(model: nn.Module) -> list[RemovableHandle]:
    """Make every embedding lookup one row per example, so per-example gradients (DP-SGD) can be found.

    Hugging Face models look positions up once for the whole batch (``position_ids`` of shape ``(1, T)``, broadcast
    when added to the tokens); DP-SGD needs each example's own row. Rather than pass position ids (each family
    numbers them its own way: RoBERTa from ``padding_idx + 1``), a hook widens any batch-of-one lookup to the batch:
    the same values, so the model computes exactly the function it computes when scored. Remove the returned handles
    after training.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    batch: list[int] = [0]

    def note_batch(_module, args, kwargs):
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None and args:
            x = args[0]
        batch[0] = int(x.shape[0]) if x is not None and hasattr(x, "shape") else 0

    def widen(_module, args):
        ids = args[0]
        n = batch[0]
        if n > 1 and ids.dim() >= 1 and ids.shape[0] == 1:
            return (ids.expand(n, *ids.shape[1:]).contiguous(), *args[1:])
        if not ids.is_contiguous():  # an expanded buffer (BERT's token types): Opacus reads lookups with view()
            return (ids.contiguous(), *args[1:])
        return None

    handles = [inner.register_forward_pre_hook(note_batch, with_kwargs=True)]
    handles += [m.register_forward_pre_hook(widen) for m in inner.modules() if isinstance(m, nn.Embedding)]
    return handles


@contextlib.contextmanager
def one_row_per_example(model: nn.Module) -> Iterator[None]:
    """:func:`per_example_lookups` for the forward passes inside the ``with`` block."""
    handles = per_example_lookups(model)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()

"""Where a canary's slots sit in the token sequence, and which token each alphabet value is (for ModIvA).

Values are tokenized in context, so any tokenizer kind works: WordPiece gives '1', byte-level BPE 'Ġ1' (the space
before the value is part of its token) and sentencepiece '▁1'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from privaudit.canary.canaries import SLOT, Canary
from privaudit.errors import PrivauditError
from privaudit.target import Target


@dataclass(frozen=True)
class SlotLayout:
    """The canary as the model sees it: token ids with placeholder slot values, and where the slots are."""

    input_ids: torch.Tensor  # (1, length), [CLS] ... [SEP] as Target.encode gives
    attention_mask: torch.Tensor  # (1, length)
    positions: tuple[int, ...]  # token index of each slot
    token_ids: tuple[tuple[int, ...], ...]  # token id of each alphabet value, per slot


def _fill_with_spans(template: str, values: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The filled template and the character span of each slot's value."""
    parts, spans, end = [], [], 0
    length = 0
    for match, value in zip(SLOT.finditer(template), values):
        fixed = template[end : match.start()]
        parts += [fixed, value]
        length += len(fixed)
        spans.append((length, length + len(value)))
        length += len(value)
        end = match.end()
    parts.append(template[end:])
    return "".join(parts), spans


def slot_layout(target: Target, canary: Canary) -> SlotLayout:
    """Tokenize the canary with placeholder values and find, for each slot, its token position and vocabulary.

    Raises:
        PrivauditError: a value is several tokens, or the unknown token, or changes how the template tokenizes.
    """
    tokenizer = target.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise PrivauditError(f"{target.path}: ModIvA needs a fast tokenizer (tokenizer.json) to locate canary slots")
    placeholder = [alphabet[0] for alphabet in canary.alphabets]
    # One text per (slot, value), the other slots holding the placeholder; the first is the placeholder itself.
    variants = [(slot, value) for slot, alphabet in enumerate(canary.alphabets) for value in alphabet]
    filled = [_fill_with_spans(canary.template, placeholder)]
    for slot, value in variants:
        values = list(placeholder)
        values[slot] = value
        filled.append(_fill_with_spans(canary.template, values))
    encoded = tokenizer([text for text, _ in filled], return_offsets_mapping=True)
    base_ids = encoded["input_ids"][0]
    if len(base_ids) > target.max_length:
        raise PrivauditError(
            f"canary template '{canary.template}' is {len(base_ids)} tokens, more than the model's {target.max_length}"
        )
    positions: list[int | None] = [None] * len(placeholder)
    token_ids: list[list[int]] = [[] for _ in placeholder]
    for (slot, value), ids, offsets, (text, spans) in zip(
        variants, encoded["input_ids"][1:], encoded["offset_mapping"][1:], filled[1:]
    ):
        start, end = spans[slot]
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        where = f"alphabet value '{value}' of slot {slot + 1}"
        if len(inside) != 1:
            raise PrivauditError(
                f"{where} is {len(inside)} tokens for this tokenizer; use single-token values"
                if len(inside) > 1
                else f"{where} gives no token for this tokenizer; use single-token values"
            )
        (index,) = inside
        if ids[index] == tokenizer.unk_token_id:
            raise PrivauditError(f"{where} is the unknown token for this tokenizer; use values in its vocabulary")
        # The value's token may carry the space before it (byte-level BPE's 'Ġ1', sentencepiece's '▁1'): tokenized in
        # context, a token is the slot's when it covers the value and nothing else but that whitespace.
        a, b = offsets[index]
        if b != end or a > start or text[a:start].strip():
            raise PrivauditError(f"{where} merges with the template's text around it; separate slots by spaces")
        fixed_same = len(ids) == len(base_ids) and all(
            a == b for i, (a, b) in enumerate(zip(ids, base_ids)) if i != index
        )
        if not fixed_same or positions[slot] not in (None, index):
            raise PrivauditError(f"{where} changes how the rest of '{canary.template}' tokenizes")
        positions[slot] = index
        token_ids[slot].append(int(ids[index]))
    ids = torch.tensor([base_ids], dtype=torch.long)
    return SlotLayout(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        positions=tuple(int(p) for p in positions),
        token_ids=tuple(tuple(t) for t in token_ids),
    )


def slot_token_ids(target: Target, canary: Canary) -> list[list[int]]:
    """The token id of each alphabet value, per slot, as the model sees it inside the template.

    Raises:
        PrivauditError: a value is several tokens, or the unknown token, or changes how the template tokenizes.
    """
    return [list(ids) for ids in slot_layout(target, canary).token_ids]

"""A token's input representation: its word vector, then, optionally, the features of a CNN over its characters.

Ma & Hovy (2016) give each word a character-level representation: character embeddings, a convolution of width 3,
max-pooled over the word. The characters of every vocabulary entry sit in a buffer (``char_ids``, saved with the
weights), so a token's whole representation is a function of its id: attacks that work in embedding space
(``inputs_embeds``) get the full table from :attr:`TokenEmbedding.weight`, and a row of it gives the same logits as
the token id.

The convolution is written as a ``nn.Linear`` over unfolded windows, not ``nn.Conv1d``: it is the same linear map,
and book-keeping DP-SGD (``privaudit.training.bookkeeping``) clips ``nn.Linear`` layers, not convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

from privaudit.models.config import WordModelConfig

PAD_CHAR, UNK_CHAR = 0, 1  # character ids; the config's char_vocab starts at 2


def windows(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Every window of ``width`` steps along ``dim`` of ``x`` (..., steps, features), each flattened step-major.

    Shape: ``x.shape`` with ``steps`` replaced by ``steps - width + 1`` and ``features`` by ``width * features``.
    """
    unfolded = x.unfold(dim, width, 1)  # (..., windows, features, width)
    unfolded = unfolded.transpose(-1, -2)  # (..., windows, width, features)
    return unfolded.reshape(*unfolded.shape[:-2], width * x.shape[-1])


def char_table(vocabulary: list[str], char_vocab: list[str], length: int) -> torch.Tensor:
    """Character ids of every vocabulary entry, ``(len(vocabulary), length)``, padded with 0 and cut at ``length``.

    Special tokens (``[PAD]``, ``[CLS]``...) get no characters.
    """
    index = {c: i + 2 for i, c in enumerate(char_vocab)}
    table = torch.zeros(len(vocabulary), length, dtype=torch.long)
    for row, token in enumerate(vocabulary):
        if token.startswith("[") and token.endswith("]"):
            continue
        ids = [index.get(c, UNK_CHAR) for c in token[:length]]
        table[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return table


class TokenEmbedding(nn.Module):
    """Word embedding, with the character CNN's features appended when the config has a character vocabulary."""

    def __init__(self, config: WordModelConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.width = config.char_width
        self.uses_chars = bool(config.char_vocab)
        if self.uses_chars:
            self.char = nn.Embedding(len(config.char_vocab) + 2, config.char_embedding_dim, padding_idx=PAD_CHAR)
            self.char_conv = nn.Linear(config.char_width * config.char_embedding_dim, config.char_filters)
            length = max(config.max_word_length, config.char_width)
            self.register_buffer("char_ids", torch.zeros(config.vocab_size, length, dtype=torch.long))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(batch, length)`` token ids to ``(batch, length, token_width)`` representations."""
        words = self.word(input_ids)
        if not self.uses_chars:
            return words
        char_ids = self.char_ids[input_ids]
        # Padding characters read zeros with no gradient at all, not only none into the padding row: Opacus's
        # per-example embedding gradients ignore padding_idx, so this keeps its DP-SGD and book-keeping's identical.
        chars = self.char(char_ids) * (char_ids != PAD_CHAR)[..., None]  # (batch, length, characters, char dim)
        features = self.char_conv(windows(chars, self.width, dim=2)).amax(dim=2)  # max over the word's windows
        return torch.cat([words, features], dim=-1)

    @property
    def weight(self) -> torch.Tensor:
        """Every vocabulary entry's representation, ``(vocab_size, token_width)``: the table attacks search in."""
        return self(torch.arange(self.word.num_embeddings, device=self.word.weight.device)[None, :])[0]

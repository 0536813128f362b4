"""A BiLSTM sentence classifier with max-pooling over time (the recurrent NLU classifiers of Parikh et al. 2022).

The LSTM is written out step by step from two ``nn.Linear`` layers per direction, as Opacus's ``DPLSTM`` is
(opacus/layers/dp_rnn.py), instead of ``nn.LSTM``: the fused kernel hides the per-example gradients that DP-SGD needs.
The input projection runs once over all time steps; the recurrent one runs at every step and says so
(``privaudit_repeated_calls``), so that book-keeping DP-SGD sums its per-example gradient over the steps, as Opacus's
hooks do. Gates in PyTorch's order (input, forget, cell, output).
"""

from __future__ import annotations

import torch
from torch import nn

from privaudit.models.base import WordClassifier, masked_max
from privaudit.models.config import BiLSTMConfig


class LSTMDirection(nn.Module):
    """One direction of an LSTM over padded, batch-first sequences; padded steps leave the state unchanged."""

    def __init__(self, input_size: int, hidden_size: int, *, reverse: bool) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.reverse = reverse
        self.input = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.recurrent.privaudit_repeated_calls = True  # read by privaudit.training.bookkeeping

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(batch, length, input)`` to the hidden states ``(batch, length, hidden)``."""
        n, length, _ = x.shape
        projected = self.input(x)
        h = x.new_zeros(n, self.hidden_size)
        c = x.new_zeros(n, self.hidden_size)
        out: list[torch.Tensor | None] = [None] * length
        for t in reversed(range(length)) if self.reverse else range(length):
            i, f, g, o = (projected[:, t] + self.recurrent(h)).chunk(4, dim=-1)
            c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_next = torch.sigmoid(o) * torch.tanh(c_next)
            keep = mask[:, t, None]
            # A right-padded sequence: the backward direction starts at each example's last real token.
            c = torch.where(keep, c_next, c)
            h = torch.where(keep, h_next, h)
            out[t] = h
        return torch.stack(out, dim=1)


class BiLSTMForSequenceClassification(WordClassifier):
    """Token representations, a one-layer BiLSTM, max-pooling over time, dropout, a linear classifier."""

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__(config)
        self.forward_lstm = LSTMDirection(config.token_width, config.hidden_size, reverse=False)
        self.backward_lstm = LSTMDirection(config.token_width, config.hidden_size, reverse=True)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.post_init()
        if config.freeze_embeddings:
            self.embeddings.word.weight.requires_grad_(False)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = torch.cat([self.forward_lstm(tokens, mask), self.backward_lstm(tokens, mask)], dim=-1)
        return masked_max(states, mask)

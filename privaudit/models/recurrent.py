"""A BiLSTM sentence classifier with max-pooling over time (the recurrent NLU classifiers of Parikh et al. 2022).

The weights sit in two ``nn.Linear`` layers per direction, as in Opacus's ``DPLSTM`` (opacus/layers/dp_rnn.py), not in
an ``nn.LSTM``: DP-SGD needs per-example gradients, which the fused kernel hides. When a DP engine watches those layers
(book-keeping's or Opacus's hooks on them), the LSTM runs step by step through them: the input projection once over
all time steps, the recurrent one at every step, saying so (``privaudit_repeated_calls``) so that book-keeping sums
its per-example gradient over the steps, as Opacus's hooks do. Otherwise (ordinary training, scoring, ModIvA) the same
weights run through PyTorch's fused LSTM, the same function about twice as fast on a CPU. Gates in PyTorch's order
(input, forget, cell, output).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.func import functional_call

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


def _watched(*layers: nn.Module) -> bool:
    """Whether hooks watch any of ``layers`` (a DP engine collecting per-example gradients)."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in layers)


def _fused(shell: nn.LSTM, forward: LSTMDirection, backward: LSTMDirection, x: torch.Tensor, lengths: torch.Tensor):
    """Both directions through PyTorch's LSTM, on the two directions' weights: ``(batch, length, 2 hidden)``.

    The recurrent layers have no bias, so the LSTM's hidden bias is zero. Padded positions come back as zeros.
    """
    zeros = forward.input.bias.new_zeros(forward.input.bias.shape)
    weights = {
        "weight_ih_l0": forward.input.weight,
        "weight_hh_l0": forward.recurrent.weight,
        "bias_ih_l0": forward.input.bias,
        "bias_hh_l0": zeros,
        "weight_ih_l0_reverse": backward.input.weight,
        "weight_hh_l0_reverse": backward.recurrent.weight,
        "bias_ih_l0_reverse": backward.input.bias,
        "bias_hh_l0_reverse": zeros,
    }
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cuDNN's note that the weights are not one contiguous block
        out, _ = functional_call(shell, weights, (packed,))
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class BiLSTMForSequenceClassification(WordClassifier):
    """Token representations, a one-layer BiLSTM, max-pooling over time, dropout, a linear classifier."""

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__(config)
        self.forward_lstm = LSTMDirection(config.token_width, config.hidden_size, reverse=False)
        self.backward_lstm = LSTMDirection(config.token_width, config.hidden_size, reverse=True)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        # The fused LSTM's module, whose own weights are never used (functional_call passes the layers' above); kept
        # outside the module tree, so it is neither saved nor trained.
        shell = nn.LSTM(config.token_width, config.hidden_size, batch_first=True, bidirectional=True)
        object.__setattr__(self, "_shell", shell)
        self.post_init()
        if config.freeze_embeddings:
            self.embeddings.word.weight.requires_grad_(False)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1)
        right_padded = bool((lengths > 0).all()) and bool(
            (mask == (torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None])).all()
        )
        layers = (self.forward_lstm.input, self.forward_lstm.recurrent, self.backward_lstm.input)
        if right_padded and not _watched(*layers, self.backward_lstm.recurrent):
            states = _fused(self._shell, self.forward_lstm, self.backward_lstm, tokens, lengths)
        else:
            states = torch.cat([self.forward_lstm(tokens, mask), self.backward_lstm(tokens, mask)], dim=-1)
        return masked_max(states, mask)

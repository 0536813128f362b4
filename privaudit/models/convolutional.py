"""Kim (2014)'s CNN sentence classifier: convolutions of several widths over the tokens, ReLU, max-pool over time.

Each convolution is a ``nn.Linear`` over unfolded windows of tokens (the same linear map as ``nn.Conv1d``), so
book-keeping DP-SGD, which clips ``nn.Linear`` layers, covers it. A text shorter than a filter is padded with zero
vectors at its end; a window counts when it starts on a real token.
"""

from __future__ import annotations

import torch
from torch import nn

from privaudit.models.base import WordClassifier, masked_max
from privaudit.models.config import CNNConfig
from privaudit.models.embedding import windows


class CNNForSequenceClassification(WordClassifier):
    """Token representations, ``num_filters`` filters per width, max-pooling, dropout, a linear classifier."""

    config_class = CNNConfig

    def __init__(self, config: CNNConfig) -> None:
        super().__init__(config)
        self.filter_sizes = list(config.filter_sizes)
        self.convs = nn.ModuleList(nn.Linear(k * config.token_width, config.num_filters) for k in self.filter_sizes)
        self.classifier = nn.Linear(len(self.filter_sizes) * config.num_filters, config.num_labels)
        self.post_init()
        if config.freeze_embeddings:
            self.embeddings.word.weight.requires_grad_(False)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = tokens * mask[..., None].to(tokens.dtype)  # padding contributes zeros to every window
        pooled = []
        for width, conv in zip(self.filter_sizes, self.convs):
            padded = nn.functional.pad(tokens, (0, 0, 0, width - 1))
            features = torch.relu(conv(windows(padded, width, dim=1)))  # (batch, length, filters)
            pooled.append(masked_max(features, mask))
        return torch.cat(pooled, dim=-1)

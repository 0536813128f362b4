"""What privaudit's word-embedding classifiers share: the token embedding, dropout, the classifier and the outputs."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from privaudit.models.config import WordModelConfig
from privaudit.models.embedding import TokenEmbedding


class WordClassifier(PreTrainedModel):
    """A sequence classifier over token representations: ``encode`` (the subclass's) pools them into one vector.

    Takes ``input_ids`` or ``inputs_embeds`` (rows of :meth:`get_input_embeddings`'s ``weight``), an optional
    ``attention_mask`` and optional ``labels``; other keyword arguments (``token_type_ids``, ``position_ids``, which
    BERT-shaped callers pass) are ignored, since these models have neither.
    """

    config_class = WordModelConfig
    main_input_name = "input_ids"

    def __init__(self, config: WordModelConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = TokenEmbedding(config)
        self.dropout = nn.Dropout(config.dropout)

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's own initialisation, drawn when each layer is built (from the seed the trainer sets), is kept.
        return

    def get_input_embeddings(self) -> nn.Module:
        """The word embedding, or with character features the whole token representation (it has ``weight``)."""
        return self.embeddings if self.embeddings.uses_chars else self.embeddings.word

    def set_input_embeddings(self, value: nn.Module) -> None:
        if isinstance(value, nn.Embedding):
            self.embeddings.word = value

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters that never train: the word vectors when they are pretrained and frozen."""
        return [self.embeddings.word.weight] if self.config.freeze_embeddings else []

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(batch, length, token_width)`` and a bool mask to ``(batch, features)``."""
        raise NotImplementedError

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **_ignored,
    ) -> SequenceClassifierOutput:
        """Logits (and, with ``labels``, the mean cross-entropy) for a batch."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        tokens = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        else:
            mask = attention_mask.bool()
        logits = self.classifier(self.dropout(self.encode(self.dropout(tokens), mask)))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of ``(batch, length, features)`` at the positions ``mask`` keeps (padding never wins)."""
    floor = torch.finfo(values.dtype).min
    return values.masked_fill(~mask[..., None], floor).amax(dim=1)

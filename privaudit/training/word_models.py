"""Building privaudit's word-embedding classifiers (``--arch bilstm`` or ``cnn``) from a training recipe.

The model classes are in ``privaudit.models``; here is what ``privaudit train`` chooses about them: the sizes, the
vocabulary trained on the data, character embeddings, and pretrained word vectors (frozen) read from a local file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from privaudit.errors import PrivauditError

ARCHES = ("bert", "bilstm", "cnn")


@dataclass(frozen=True)
class WordModel:
    """The sizes of a BiLSTM or CNN classifier; recorded in the recipe, so reference models are built alike.

    ``embedding_dim`` ``None`` takes the word vectors' dimension, or 100 without them. ``word_vectors`` is a local
    GloVe / word2vec text file; its vectors are frozen (words it lacks keep a frozen random vector).
    """

    embedding_dim: int | None = None
    hidden_size: int = 100
    filter_sizes: tuple[int, ...] = (3, 4, 5)
    num_filters: int = 100
    char_embeddings: bool = False
    char_embedding_dim: int = 30
    char_filters: int = 30
    max_word_length: int = 16
    vocab_size: int = 10000
    dropout: float = 0.0
    word_vectors: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "filter_sizes", tuple(int(k) for k in self.filter_sizes))
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise PrivauditError(f"--embedding-dim must be at least 1, not {self.embedding_dim}")
        if not 0 <= self.dropout < 1:
            raise PrivauditError(f"--dropout must be in [0, 1), not {self.dropout}")

    @classmethod
    def from_recipe(cls, raw: dict) -> WordModel:
        """Read back from ``privaudit.json`` (lists for tuples)."""
        return cls(**raw)


def check_arch(arch: str) -> str:
    """The architecture name, checked.

    Raises:
        PrivauditError: not one of :data:`ARCHES`.
    """
    if arch not in ARCHES:
        raise PrivauditError(f"--arch '{arch}' is unknown; use one of {', '.join(ARCHES)}")
    return arch


def _embedding_table(spec: WordModel, vocabulary: list[str], dim: int | None) -> tuple[np.ndarray | None, int]:
    if spec.word_vectors is None:
        return None, dim or 100
    from privaudit.models.vocabulary import read_word_vectors

    found, width = read_word_vectors(Path(spec.word_vectors), set(vocabulary), dim=dim)
    # Words the file lacks keep a random vector of the file's scale, drawn from the seeded global generator.
    known = np.stack(list(found.values())) if found else np.zeros((1, width), np.float32)
    scale = float(known.std()) or 1.0
    table = torch.randn(len(vocabulary), width).numpy() * scale
    for row, word in enumerate(vocabulary):
        if word in found:
            table[row] = found[word]
    return table, width


def build_word_model(
    arch: str, spec: WordModel, label_names: list[str], texts: Sequence[str], max_length: int, tokenizer
):
    """The BiLSTM or CNN classifier to train, and its word-level tokenizer (trained on ``texts`` unless given).

    Raises:
        PrivauditError: an unreadable word-vector file, or one whose dimension is not ``embedding_dim``.
    """
    from privaudit.models import BiLSTMConfig, CNNConfig, register
    from privaudit.models.embedding import char_table
    from privaudit.models.vocabulary import char_vocabulary, train_word_tokenizer

    register()
    from transformers import AutoModelForSequenceClassification

    if tokenizer is None:
        tokenizer = train_word_tokenizer(texts, vocab_size=spec.vocab_size, max_length=max_length)
    vocab = tokenizer.get_vocab()
    vocabulary = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    table, dim = _embedding_table(spec, vocabulary, spec.embedding_dim)
    chars = char_vocabulary(vocabulary) if spec.char_embeddings else []
    common = {
        "vocab_size": len(vocabulary),
        "embedding_dim": dim,
        "freeze_embeddings": table is not None,
        "char_vocab": chars,
        "char_embedding_dim": spec.char_embedding_dim,
        "char_filters": spec.char_filters,
        "max_word_length": spec.max_word_length,
        "dropout": spec.dropout,
        "pad_token_id": tokenizer.pad_token_id,
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    if arch == "bilstm":
        config = BiLSTMConfig(hidden_size=spec.hidden_size, **common)
    else:
        config = CNNConfig(filter_sizes=list(spec.filter_sizes), num_filters=spec.num_filters, **common)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        if table is not None:
            model.embeddings.word.weight.copy_(torch.from_numpy(table))
        model.embeddings.word.weight[tokenizer.pad_token_id] = 0
        if chars:
            model.embeddings.char_ids.copy_(char_table(vocabulary, chars, model.embeddings.char_ids.shape[1]))
    return model, tokenizer

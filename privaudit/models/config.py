"""The configs of privaudit's own text classifiers: a ``model_type`` of privaudit's, so transformers' Auto classes load
them from privaudit's registration (``privaudit.models.register``), never from remote code."""

from __future__ import annotations

from transformers import PretrainedConfig

BILSTM = "privaudit-bilstm"
CNN = "privaudit-cnn"


class WordModelConfig(PretrainedConfig):
    """What a word-embedding classifier is built from; the BiLSTM's and the CNN's configs add their encoder's sizes.

    Args:
        vocab_size: word vocabulary size (the tokenizer's).
        embedding_dim: width of the word embedding.
        freeze_embeddings: the word embedding does not train (frozen pretrained vectors, ``--word-vectors``).
        char_vocab: the characters of the character embedding, in id order after padding (0) and unknown (1); empty:
            no character embedding.
        char_embedding_dim: width of a character's embedding.
        char_filters: filters of the per-word character CNN (Ma & Hovy 2016: 30).
        char_width: window of the character CNN (Ma & Hovy 2016: 3).
        max_word_length: characters read per word; longer words are cut.
        dropout: dropout on the token representations and before the classifier (Ma & Hovy 2016: 0.5).
    """

    def __init__(
        self,
        vocab_size: int = 1000,
        embedding_dim: int = 100,
        freeze_embeddings: bool = False,
        char_vocab: list[str] | None = None,
        char_embedding_dim: int = 30,
        char_filters: int = 30,
        char_width: int = 3,
        max_word_length: int = 16,
        dropout: float = 0.0,
        pad_token_id: int = 0,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.freeze_embeddings = freeze_embeddings
        self.char_vocab = list(char_vocab or [])
        self.char_embedding_dim = char_embedding_dim
        self.char_filters = char_filters
        self.char_width = char_width
        self.max_word_length = max_word_length
        self.dropout = dropout
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def token_width(self) -> int:
        """Width of one token's input representation: word embedding, then character features if any."""
        return self.embedding_dim + (self.char_filters if self.char_vocab else 0)


class BiLSTMConfig(WordModelConfig):
    """A BiLSTM with max-pooling over time; ``hidden_size`` units per direction."""

    model_type = BILSTM

    def __init__(self, hidden_size: int = 100, **kwargs) -> None:
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class CNNConfig(WordModelConfig):
    """Kim (2014)'s CNN: ``num_filters`` filters of each width in ``filter_sizes``, max-pooled over time."""

    model_type = CNN

    def __init__(self, filter_sizes: list[int] | tuple[int, ...] = (3, 4, 5), num_filters: int = 100, **kwargs) -> None:
        self.filter_sizes = [int(k) for k in filter_sizes]
        self.num_filters = num_filters
        super().__init__(**kwargs)

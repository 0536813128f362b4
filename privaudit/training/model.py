"""The models privaudit trains: a local pretrained base, or a small BERT with a WordPiece tokenizer trained on the data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from privaudit.families.forward import prepare
from privaudit.target import _quiet_transformers
from privaudit.training.config import Architecture, TrainConfig  # noqa: F401 (Architecture re-exported)
from privaudit.training.head import load_base

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Sequence[str], *, vocab_size: int, max_length: int):
    """A WordPiece tokenizer trained on the training texts (for ``--from-scratch``)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def wordpiece(vocab: dict[str, int] | None = None) -> Tokenizer:
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]") if vocab else models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        return tok

    # The trainer gives each continuing-subword token ("##e") its id in hash-map order, and breaks ties between
    # merges by id, so the same texts gave a different vocabulary on every run (huggingface/tokenizers#1794).
    # Registering those tokens up front, sorted, fixes their ids and so the whole vocabulary.
    tok = wordpiece()
    inner = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            inner.update(word[1:])
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS + [f"##{c}" for c in sorted(inner)],
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    # The same vocabulary in a fresh tokenizer, where only the real special tokens are special.
    tok = wordpiece(tok.get_vocab(with_added_tokens=False))
    tok.add_special_tokens(SPECIAL_TOKENS)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_model(config: TrainConfig, label_names: list[str], texts: Sequence[str], tokenizer=None):
    """The model to train, its tokenizer, and notes for the user.

    A local ``--base`` model, or a small BERT with a WordPiece vocabulary trained on ``texts``. A base that is already
    a classifier over the same labels keeps its head, its rows put in ``label_names`` order; any other head is
    replaced by a new one, and a note says so. A decoder base without a pad token gets one
    (:func:`privaudit.families.forward.prepare`), and a note says which.

    Returns:
        ``(model, tokenizer, notes)``.
    """
    _quiet_transformers()
    if config.arch != "bert":  # family: privaudit's own word-embedding classifiers (privaudit.models)
        from privaudit.training.word_models import WordModel, build_word_model

        spec = config.word_model or WordModel()
        model, tokenizer = build_word_model(config.arch, spec, label_names, texts, config.max_length, tokenizer)
        return model, tokenizer, []
    from transformers import BertConfig, BertForSequenceClassification

    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    if config.base is not None:
        model, tokenizer, notes = load_base(Path(config.base), label_names, tokenizer)
        note = prepare(model, tokenizer, where=f"--base {config.base}")
        return model, tokenizer, notes + ([note] if note else [])
    arch = config.architecture or Architecture()
    if tokenizer is None:
        tokenizer = train_tokenizer(texts, vocab_size=arch.vocab_size, max_length=config.max_length)
    bert = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=config.max_length,
        type_vocab_size=1,
        hidden_dropout_prob=arch.dropout,
        attention_probs_dropout_prob=arch.dropout,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(label_names),
        id2label=id2label,
        label2id=label2id,
    )
    return BertForSequenceClassification(bert), tokenizer, []

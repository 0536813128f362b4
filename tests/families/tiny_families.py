"""One tiny classifier per model family, built with transformers' config classes, saved with ``save_pretrained``.

Tokenizers are trained by the ``tokenizers`` library on fixture texts: WordPiece for the BERT-likes, byte-level BPE
for RoBERTa, GPT-2, Llama and Qwen2, Unigram (sentencepiece-style) for ALBERT, DeBERTa-v2 and XLM-R. Every model is a
sequence classifier over the fixture's three labels, hidden size 16, one layer: the whole matrix stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import CANARY_TEMPLATE, LABELS, make_records

HIDDEN = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
MAX_POSITIONS = 64


@dataclass(frozen=True)
class Family:
    name: str  # the test id
    config_class: str
    model_class: str
    tokenizer: str  # wordpiece, bytelevel, unigram
    kwargs: dict
    decoder: bool = False


FAMILIES = [
    Family("bert", "BertConfig", "BertForSequenceClassification", "wordpiece", dict(**HIDDEN, type_vocab_size=2)),
    Family(
        "distilbert",
        "DistilBertConfig",
        "DistilBertForSequenceClassification",
        "wordpiece",
        dict(dim=16, n_layers=1, n_heads=2, hidden_dim=32),
    ),
    Family("roberta", "RobertaConfig", "RobertaForSequenceClassification", "bytelevel-roberta", dict(**HIDDEN)),
    Family("xlm-roberta", "XLMRobertaConfig", "XLMRobertaForSequenceClassification", "unigram", dict(**HIDDEN)),
    Family("deberta-v2", "DebertaV2Config", "DebertaV2ForSequenceClassification", "unigram", dict(**HIDDEN)),
    Family(
        "electra", "ElectraConfig", "ElectraForSequenceClassification", "wordpiece", dict(**HIDDEN, embedding_size=16)
    ),
    Family("albert", "AlbertConfig", "AlbertForSequenceClassification", "unigram", dict(**HIDDEN, embedding_size=16)),
    Family("modernbert", "ModernBertConfig", "ModernBertForSequenceClassification", "wordpiece", dict(**HIDDEN)),
    Family(
        "gpt2", "GPT2Config", "GPT2ForSequenceClassification", "bytelevel", dict(n_embd=16, n_layer=1, n_head=2), True
    ),
    Family(
        "llama",
        "LlamaConfig",
        "LlamaForSequenceClassification",
        "bytelevel",
        dict(**HIDDEN, num_key_value_heads=2, tie_word_embeddings=False),
        True,
    ),
    Family(
        "qwen2",
        "Qwen2Config",
        "Qwen2ForSequenceClassification",
        "bytelevel",
        dict(**HIDDEN, num_key_value_heads=2, tie_word_embeddings=False),
        True,
    ),
]


def corpus() -> list[str]:
    texts = [r["text"] for r in make_records(300, seed=7)]
    # Digits often enough that each is one token after a space ('1', 'Ġ1', '▁1'), as in real vocabularies.
    digits = [" ".join(str((7 * i + 3 * j) % 10) for j in range(6)) for i in range(400)]
    return texts + [CANARY_TEMPLATE.replace("{d}", d) for d in "0123456789"] + digits


def train_tokenizer(kind: str):
    """A fast tokenizer of the given kind, trained on the fixture corpus."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from privaudit.training.model import train_tokenizer as wordpiece

    texts = corpus()
    if kind == "wordpiece":
        return wordpiece(texts, vocab_size=300, max_length=MAX_POSITIONS)
    if kind.startswith("bytelevel"):
        roberta = kind == "bytelevel-roberta"
        special = ["<s>", "<pad>", "</s>", "<unk>"] if roberta else ["<|endoftext|>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        if roberta:
            tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
            return PreTrainedTokenizerFast(
                tokenizer_object=tok,
                bos_token="<s>",
                eos_token="</s>",
                pad_token="<pad>",
                unk_token="<unk>",
                cls_token="<s>",
                sep_token="</s>",
                model_max_length=MAX_POSITIONS,
            )
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        # A decoder's tokenizer as GPT-2's: an end-of-text token and no pad token.
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", model_max_length=MAX_POSITIONS
        )
    special = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=special, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_POSITIONS,
    )


def build(family: Family, out: Path) -> Path:
    """Save a randomly initialised classifier of ``family`` with its tokenizer into ``out``; return ``out``."""
    import transformers

    if not hasattr(transformers, family.config_class) or not hasattr(transformers, family.model_class):
        pytest.skip(f"transformers {transformers.__version__} has no {family.model_class}")
    tokenizer = train_tokenizer(family.tokenizer)
    kwargs = dict(family.kwargs)
    pad = tokenizer.pad_token_id
    if family.name in ("roberta", "xlm-roberta"):
        kwargs["max_position_embeddings"] = MAX_POSITIONS + pad + 1  # positions from padding_idx + 1
    elif family.name == "gpt2":
        kwargs["n_positions"] = MAX_POSITIONS
    else:
        kwargs["max_position_embeddings"] = MAX_POSITIONS
    ids = {}
    for key in ("bos", "eos", "cls", "sep"):
        token_id = getattr(tokenizer, f"{key}_token_id", None)
        if token_id is not None:
            ids[f"{key}_token_id"] = token_id
    config = getattr(transformers, family.config_class)(
        vocab_size=len(tokenizer),
        pad_token_id=pad,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
        **ids,
        **kwargs,
    )
    torch.manual_seed(0)
    model = getattr(transformers, family.model_class)(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=FAMILIES, ids=[f.name for f in FAMILIES])
def family_base(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Family, Path]:
    """(family, directory of its untrained tiny classifier), built once per module and family."""
    family = request.param
    return family, build(family, tmp_path_factory.mktemp(family.name) / "base")

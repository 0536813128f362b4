"""The word-level tokenizer, the character vocabulary and pretrained word vectors of privaudit's word models."""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from privaudit.errors import PrivauditError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
# Every single digit and letter is in the vocabulary, seen or not, as in a WordPiece vocabulary: a canary's slot
# values ({d}, {l}) are then one known token each, never [UNK], whichever values the training data happened to hold.
ALWAYS = list(string.digits + string.ascii_lowercase)


def _pipeline():
    from tokenizers import normalizers, pre_tokenizers

    return normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()


def words_of(texts: Sequence[str]) -> Counter:
    """How often each word (as the tokenizer splits and lower-cases it) occurs in ``texts``."""
    normalizer, pre_tokenizer = _pipeline()
    counts: Counter = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def train_word_tokenizer(texts: Sequence[str], *, vocab_size: int, max_length: int):
    """A word-level tokenizer over the ``vocab_size`` most frequent words of ``texts`` (ties by the word itself).

    ``[CLS] text [SEP]``, as the BERT tokenizer gives, so that no text is empty; unknown words are ``[UNK]``.
    """
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    counts = words_of(texts)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in ALWAYS:
        vocab.setdefault(word, len(vocab))
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = _pipeline()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=max_length,
    )


def char_vocabulary(tokens: Sequence[str]) -> list[str]:
    """Every character of the vocabulary's words, sorted (special tokens left out)."""
    return sorted({c for t in tokens if not (t.startswith("[") and t.endswith("]")) for c in t})


def read_word_vectors(path: Path, words: set[str], *, dim: int | None) -> tuple[dict[str, np.ndarray], int]:
    """The vectors of ``words`` from a GloVe or word2vec text file (``word v1 ... vD`` a line; word2vec's
    ``count dim`` header line is allowed), and their dimension.

    Every line is checked, not only those of ``words``, so that a broken file fails whatever the data.

    Raises:
        PrivauditError: a missing or unreadable file, a line that does not parse (named by its number), lines of
            different widths, or a width other than ``dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"{path}: no such word-vector file; give a GloVe or word2vec text file")
    found: dict[str, np.ndarray] = {}
    width = None
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.rstrip("\n").rstrip(" ").split(" ")
                if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    continue  # word2vec's header: count and dimension
                if not line.strip():
                    continue
                try:
                    values = np.array(fields[1:], dtype=np.float32)
                except ValueError:
                    values = None
                if values is None or len(fields) < 2:
                    raise PrivauditError(
                        f"{path}:{number}: not a word vector ('word v1 v2 ...', numbers separated by spaces)"
                    )
                if width is None:
                    width = len(values)
                    if dim is not None and width != dim:
                        raise PrivauditError(
                            f"{path}: the vectors have {width} dimensions, but --embedding-dim is {dim}; "
                            f"pass --embedding-dim {width} or leave it out"
                        )
                elif len(values) != width:
                    raise PrivauditError(f"{path}:{number}: {len(values)} numbers, but the first vector has {width}")
                if fields[0] in words and fields[0] not in found:
                    found[fields[0]] = values
    except UnicodeDecodeError as err:
        raise PrivauditError(f"{path}: not a UTF-8 text file of word vectors ({err.reason})") from err
    except OSError as err:
        raise PrivauditError(f"{path}: cannot read the word vectors ({err.strerror or err})") from err
    if width is None:
        raise PrivauditError(f"{path}: the word-vector file holds no vectors")
    return found, width

"""Data canaries: one-run canaries a user mixes into their own training data, seen later in the weights.

``privaudit plant`` draws ``M`` canaries, each a short text made of wordpieces that occur nowhere in the training data,
with a random label. Each is inserted into the data independently with probability 1/2 (Steinke, Nasr, Jagielski 2023,
"Privacy auditing with one (1) training run"); the user trains on the planted file in their own pipeline, and
``privaudit dp-audit MODEL --base BASE -c SECRET`` scores every canary from the final model
(:mod:`privaudit.canary.data_canaries`).

Why wordpieces absent from the data: the input-embedding row of such a token receives a gradient only from the canary
that owns it, so the row's movement from the base weights is that canary's own trace, and no other example blurs it
(Panda et al. 2025, "Privacy auditing of large language models", use new and rare tokens for the same reason). No two
canaries share a token, so each canary owns its rows alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit.canary.canaries import DATA_KIND
from privaudit.data import read_dataset
from privaudit.errors import PrivauditError

KIND = DATA_KIND
SECRET_DIR = "secret"
SECRET_FILE = "canaries.jsonl"
# Two tokens a canary. Measured (docs/dp-audit.md, "Data canaries"): at a weak noise where the white-box score
# separates partly, the AUC for 1, 2, 4, 8 and 16 tokens was 0.88, 0.93, 0.87, 0.86 and 0.87 (one seed: flat within its
# noise), and the share of a canary's gradient in its own rows 0.8%, 0.8% (4 tokens) and 0.5% (16); two is as strong as
# any and leaves room for half as many canaries as the vocabulary's free wordpieces.
DEFAULT_TOKENS_PER_CANARY = 2
MAX_FRACTION = 0.10
_TOKENIZE_CHUNK = 2048


@dataclass(frozen=True)
class DataCanary:
    """One data canary, as the secret file records it.

    Attributes:
        index: its position in the secret file.
        inserted: whether it was added to the training data (the coin, probability 1/2).
        text: the canary text, the owned tokens joined by spaces.
        label: its random label, a label of the data as written there (name or id).
        token_ids: the base tokenizer's ids of the tokens it owns (its input-embedding rows).
        tokens: those tokens as the base tokenizer spells them (checked against the audited model's vocabulary).
    """

    index: int
    inserted: bool
    text: str
    label: str | int
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]

    def to_json(self) -> str:
        """One line of the secret file."""
        return json.dumps(
            {
                "kind": KIND,
                "index": self.index,
                "inserted": self.inserted,
                "text": self.text,
                "label": self.label,
                "token_ids": list(self.token_ids),
                "tokens": list(self.tokens),
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class PlantResult:
    """What ``privaudit plant`` wrote.

    Attributes:
        data: the planted training file (give this one to the trainer).
        secret: the secret canary file (never give this one to the trainer).
        rows: rows of the planted file.
        inserted: canaries inserted into it.
        canaries: canaries drawn (inserted or not).
        free_tokens: wordpieces of the base vocabulary the data never uses and raw text reaches.
        tokens_per_canary: tokens each canary owns.
    """

    data: Path
    secret: Path
    rows: int
    inserted: int
    canaries: int
    free_tokens: int
    tokens_per_canary: int


def load_tokenizer(base: Path):
    """The base model's tokenizer: local files only, no remote code.

    Raises:
        PrivauditError: not a directory, or no tokenizer that transformers can load from it.
    """
    from privaudit.target import _quiet_transformers

    base = Path(base)
    if not base.is_dir():
        raise PrivauditError(f"{base}: no such base model directory; give --base the directory you fine-tune from")
    _quiet_transformers()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrivauditError(f"{base}: cannot load the base's tokenizer ({first})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise PrivauditError(f"{base}: data canaries need a fast (Rust) tokenizer; save tokenizer.json beside the base")
    return tokenizer


def used_token_ids(tokenizer, texts: Sequence[str]) -> set[int]:
    """Every token id the texts tokenize to (without special tokens, without truncation)."""
    used: set[int] = set()
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        encoded = tokenizer(list(texts[start : start + _TOKENIZE_CHUNK]), add_special_tokens=False)
        for ids in encoded["input_ids"]:
            used.update(ids)
    return used


def free_wordpieces(tokenizer, texts: Sequence[str]) -> list[tuple[int, str]]:
    """Tokens the texts never use and that raw text reaches: ``(id, spelling)``, by id.

    A token is reachable when its own spelling, as raw text, tokenizes to exactly that one id: ``[unusedN]``, special
    tokens, continuation pieces (``##ing``) and tokens the normaliser changes (upper case on an uncased vocabulary)
    are left out, because no text the trainer reads would ever produce them.
    """
    used = used_token_ids(tokenizer, texts)
    special = set(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    candidates = sorted(
        (i, tok) for tok, i in vocab.items() if i not in used and i not in special and tok and not tok.isspace()
    )
    spellings = [tokenizer.convert_tokens_to_string([tok]).strip() for _, tok in candidates]
    free = []
    for start in range(0, len(candidates), _TOKENIZE_CHUNK):
        chunk = spellings[start : start + _TOKENIZE_CHUNK]
        encoded = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        for (i, _tok), spelling, ids in zip(candidates[start : start + _TOKENIZE_CHUNK], chunk, encoded):
            if spelling and not any(c.isspace() for c in spelling) and ids == [i]:
                free.append((i, spelling))
    return free


def draw_data_canaries(
    tokenizer,
    free: Sequence[tuple[int, str]],
    *,
    count: int,
    tokens_per_canary: int,
    labels: Sequence[str | int],
    rng: np.random.Generator,
) -> list[DataCanary]:
    """``count`` canaries from disjoint sets of free tokens, each with a random label and a fair coin.

    Raises:
        PrivauditError: a canary text whose tokenization is not exactly its own tokens (a tokenizer that merges across
            spaces), so that its rows would not be its own.
    """
    order = rng.permutation(len(free))[: count * tokens_per_canary]
    canaries = []
    for index in range(count):
        picked = [free[j] for j in order[index * tokens_per_canary : (index + 1) * tokens_per_canary]]
        ids = tuple(int(i) for i, _ in picked)
        text = " ".join(spelling for _, spelling in picked)
        if tokenizer(text, add_special_tokens=False)["input_ids"] != list(ids):
            raise PrivauditError(
                # The text itself stays out of the message: it is a canary secret.
                "the base's tokenizer does not split a canary's words at the spaces between them; data canaries "
                "need a tokenizer that does (WordPiece, as BERT's)"
            )
        canaries.append(
            DataCanary(
                index=index,
                inserted=bool(rng.integers(2)),
                text=text,
                label=labels[int(rng.integers(len(labels)))],
                token_ids=ids,
                tokens=tuple(tokenizer.convert_ids_to_tokens(list(ids))),
            )
        )
    return canaries


def plant(
    data: Path,
    *,
    base: Path,
    count: int,
    out: Path,
    seed: int = 0,
    force: bool = False,
    tokens_per_canary: int = DEFAULT_TOKENS_PER_CANARY,
) -> PlantResult:
    """Draw ``count`` data canaries, insert each with probability 1/2, and write the planted data and the secret file.

    The output directory is built beside ``out`` under a temporary name and renamed into place at the end, so a failed
    run leaves nothing behind.

    Args:
        data: the training data, JSONL or CSV with ``text`` and ``label`` fields.
        base: the model directory the user fine-tunes from (its tokenizer decides which tokens are free).
        count: canaries to draw (about half are inserted).
        out: the output directory; it must not exist.
        seed: seeds the canaries, their coins and labels, and the shuffle.
        force: allow ``count`` above 10% of the data's rows.
        tokens_per_canary: wordpieces each canary owns.

    Raises:
        PrivauditError: bad data or base, ``out`` exists, too many canaries for the data or for the free vocabulary.
    """
    data, out = Path(data), Path(out)
    if count < 1:
        raise PrivauditError(f"--count must be at least 1, got {count}")
    if tokens_per_canary < 1:
        raise PrivauditError(f"--tokens-per-canary must be at least 1, got {tokens_per_canary}")
    if out.exists():
        raise PrivauditError(f"{out}: the output already exists; choose a new --out directory (nothing was written)")
    dataset = read_dataset(data)
    if count > MAX_FRACTION * len(dataset) and not force:
        raise PrivauditError(
            f"--count {count} is more than 10% of the {len(dataset)} rows of {data} and would change the data a lot; "
            f"use at most {int(MAX_FRACTION * len(dataset))}, or pass --force"
        )
    tokenizer = load_tokenizer(base)
    free = free_wordpieces(tokenizer, dataset.texts)
    fit = len(free) // tokens_per_canary
    if count > fit:
        raise PrivauditError(
            f"{data}: only {len(free)} wordpieces of the base's vocabulary are free of the data, room for {fit} "
            f"canaries of {tokens_per_canary} tokens; use --count {fit} or fewer (or fewer --tokens-per-canary)"
        )
    rng = np.random.default_rng(seed)
    labels = list(dict.fromkeys(dataset.labels))
    canaries = draw_data_canaries(
        tokenizer, free, count=count, tokens_per_canary=tokens_per_canary, labels=labels, rng=rng
    )
    inserted = [c for c in canaries if c.inserted]
    records, fields = _raw_records(data)
    rows = records + [{"text": c.text, "label": c.label} for c in inserted]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    planted = out / data.name
    secret = out / SECRET_DIR / SECRET_FILE
    _write_atomically(
        out,
        {
            data.name: _render(data, rows, fields),
            f"{SECRET_DIR}/{SECRET_FILE}": "".join(c.to_json() + "\n" for c in canaries),
        },
    )
    return PlantResult(
        data=planted,
        secret=secret,
        rows=len(rows),
        inserted=len(inserted),
        canaries=len(canaries),
        free_tokens=len(free),
        tokens_per_canary=tokens_per_canary,
    )


def _raw_records(path: Path) -> tuple[list[dict], list[str]]:
    """The file's records as written (every field kept), and its field names in order (already validated)."""
    raw = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(raw, newline=""))
        return list(reader), list(reader.fieldnames or ())
    records = [json.loads(line) for line in raw.split("\n") if line.strip()]
    return records, list(dict.fromkeys(key for record in records for key in record))


def _render(path: Path, rows: list[dict], fields: list[str]) -> str:
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO(newline="")
        # Other columns of a canary row stay empty: it has only a text and a label.
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _write_atomically(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into a temporary directory beside ``out``, then rename it to ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise PrivauditError(f"{out}: cannot create the output directory ({err.strerror or err})") from None
    try:
        for name, text in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        umask = os.umask(0o22)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private; the planted data is as any new directory
        (tmp / SECRET_DIR).chmod(0o700)  # the secrets: readable by their owner only
        os.rename(tmp, out)
    except OSError as err:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise PrivauditError(
            f"{out}: cannot write the planted data ({err.strerror or err}); nothing was written"
        ) from None

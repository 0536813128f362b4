"""``privaudit plant``: data canaries of free wordpieces, the planted file, the secret file, and every refusal."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_records, write_jsonl
from outside.pipeline import BaseShape, make_base
from transformers import AutoTokenizer

from privaudit.canary.data_canaries import read_data_canaries
from privaudit.canary.dpaudit import canary_file_kinds
from privaudit.canary.plant import free_wordpieces, plant, used_token_ids
from privaudit.errors import PrivauditError

# Tokens a WordPiece vocabulary may hold that no raw text reaches: a reserved row, an upper-case token on a lower-casing
# tokenizer, a continuation piece, and one the pre-tokenizer splits at its punctuation.
UNREACHABLE = ("[unused0]", "[unused1]", "Zebra", "##qqq", "a.b")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    texts = [r["text"] for r in make_records(200, seed=3)]
    return make_base(
        tmp_path_factory.mktemp("plant") / "base",
        texts,
        extra_words=120,
        extra_tokens=UNREACHABLE,
        shape=BaseShape(hidden_size=16, intermediate_size=32),
    )


@pytest.fixture
def data(tmp_path) -> Path:
    rows = make_records(200, seed=3)
    for i, row in enumerate(rows):
        row["id"] = i  # a field of the user's own, kept as it is
    return write_jsonl(tmp_path / "train.jsonl", rows)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_canaries_own_free_reachable_wordpieces_and_half_are_inserted(base, data, tmp_path):
    result = plant(data, base=base, count=20, out=tmp_path / "out", seed=1, tokens_per_canary=3)
    canaries = read_data_canaries(result.secret)
    tokenizer = AutoTokenizer.from_pretrained(base)
    used = used_token_ids(tokenizer, [r["text"] for r in read_jsonl(data)])
    owned = [i for c in canaries for i in c.token_ids]
    assert len(canaries) == 20 and all(len(c.token_ids) == 3 for c in canaries)
    assert len(set(owned)) == len(owned), "no two canaries share a token"
    assert not set(owned) & used, "a canary token occurs in the data"
    for c in canaries:
        # Round trip: the text the trainer reads tokenizes to exactly the canary's own rows.
        assert tokenizer(c.text, add_special_tokens=False)["input_ids"] == list(c.token_ids)
        assert c.tokens == tuple(tokenizer.convert_ids_to_tokens(list(c.token_ids)))
    assert not {t for c in canaries for t in c.tokens} & set(UNREACHABLE)
    assert {c.label for c in canaries} <= {"get_weather", "play_music", "set_alarm"}
    assert result.inserted == sum(c.inserted for c in canaries) and 0 < result.inserted < 20


def test_free_wordpieces_leave_out_what_raw_text_cannot_reach(base):
    tokenizer = AutoTokenizer.from_pretrained(base)
    free = dict(free_wordpieces(tokenizer, ["what is the weather in paris"]))
    vocab = tokenizer.get_vocab()
    for token in UNREACHABLE:
        assert vocab[token] not in free, token
    for word in ("what", "weather", "paris"):
        assert vocab[word] not in free
    assert vocab["boston"] in free and free[vocab["boston"]] == "boston"  # a data word, but not of this text
    assert not set(free) & set(tokenizer.all_special_ids)


def test_planted_file_keeps_the_rows_and_format_and_adds_the_inserted_canaries(base, data, tmp_path):
    result = plant(data, base=base, count=20, out=tmp_path / "out", seed=1)
    assert result.data == tmp_path / "out" / "train.jsonl"
    assert result.secret == tmp_path / "out" / "secret" / "canaries.jsonl"
    original, planted = read_jsonl(data), read_jsonl(result.data)
    canaries = read_data_canaries(result.secret)
    inserted = [{"text": c.text, "label": c.label} for c in canaries if c.inserted]
    assert len(planted) == len(original) + len(inserted) == result.rows
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, planted)) == sorted(map(key, original + inserted))
    assert [key(r) for r in planted[: len(original)]] != [key(r) for r in original], "rows are shuffled"
    left_out = {c.text for c in canaries if not c.inserted}
    assert not left_out & {r["text"] for r in planted}
    assert canary_file_kinds(result.secret) == {"data"}


def test_csv_stays_csv_with_its_columns(base, tmp_path):
    rows = make_records(100, seed=4)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", "text", "label"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({"id": i, **r} for i, r in enumerate(rows))
    data = tmp_path / "train.csv"
    data.write_text(buffer.getvalue(), encoding="utf-8")
    result = plant(data, base=base, count=10, out=tmp_path / "out", seed=0)
    assert result.data.name == "train.csv"
    planted = list(csv.DictReader(io.StringIO(result.data.read_text(encoding="utf-8"))))
    assert list(planted[0]) == ["id", "text", "label"]
    canaries = {c.text: c for c in read_data_canaries(result.secret) if c.inserted}
    added = [r for r in planted if r["text"] in canaries]
    assert len(added) == len(canaries) == result.inserted
    assert all(r["id"] == "" and r["label"] == canaries[r["text"]].label for r in added)


def test_same_seed_same_files_other_seed_other_canaries(base, data, tmp_path):
    a = plant(data, base=base, count=10, out=tmp_path / "a", seed=5)
    b = plant(data, base=base, count=10, out=tmp_path / "b", seed=5)
    c = plant(data, base=base, count=10, out=tmp_path / "c", seed=6)
    assert a.secret.read_bytes() == b.secret.read_bytes() and a.data.read_bytes() == b.data.read_bytes()
    assert a.secret.read_bytes() != c.secret.read_bytes()


def test_secret_directory_is_private(base, data, tmp_path):
    result = plant(data, base=base, count=5, out=tmp_path / "out")
    assert result.secret.parent.stat().st_mode & 0o077 == 0
    assert (tmp_path / "out").stat().st_mode & 0o700 == 0o700


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(count=21), "--count 21 is more than 10% of the 200 rows"),
        (dict(count=100, force=True, tokens_per_canary=4), r"only 146 wordpieces .* room for 36 canaries of 4 tokens"),
        (dict(count=0), "--count must be at least 1"),
    ],
)
def test_refusals_write_nothing(base, data, tmp_path, kwargs, message):
    out = tmp_path / "out"
    with pytest.raises(PrivauditError, match=message):
        plant(data, base=base, out=out, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"], "nothing half-written"


def test_free_wordpieces_are_the_vocabulary_words_the_data_never_uses(base, data):
    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = [r["text"] for r in read_jsonl(data)]
    splitter = tokenizer.backend_tokenizer.pre_tokenizer
    words = {w for t in texts for w, _ in splitter.pre_tokenize_str(t.lower())}
    special = set(tokenizer.all_special_tokens)
    expected = {
        t for t in tokenizer.get_vocab() if t not in special | words | set(UNREACHABLE) and not t.startswith("##")
    }
    free = free_wordpieces(tokenizer, texts)
    assert {spelling for _, spelling in free} == expected
    assert len(free) == 146  # 120 generated words, and 26 letters and digits never a word of the data
    assert np.all(np.diff([i for i, _ in free]) > 0)

"""Tests for privaudit.canary.modiva: white-box canary extraction on the intent-tiny fixture.

The fixture's exposure canaries each carry a random label, so the model can only fit them by their secret. By
exhaustive search over all 10^4 secrets (10^4 forward passes), the inserted secrets rank 3 to 496 by the model's loss
for their label, the never-inserted controls 1393 to 9030: the leak is there, and the attack should find much of it
without enumerating the space.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from privaudit.canary.canaries import ALPHABETS, Canary, read_canaries
from privaudit.canary.modiva import ModivaConfig, extract, extract_all
from privaudit.canary.slots import slot_token_ids
from privaudit.errors import PrivauditError
from privaudit.target import Target

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
TEMPLATE = "my pin code is {d} {d} {d} {d}"
# Half the default steps keeps the module under ~20 s; measured with it on intent-tiny (seed 0), inserted vs controls:
# slot accuracy 0.475 vs 0.10, median rank of the true secret 266 vs 4328 (random: 5000), 1 of 10 recovered exactly.
CONFIG = ModivaConfig(steps=150, restarts=16)
SMALL = ModivaConfig(steps=30, restarts=4, top_k=5)


@pytest.fixture(scope="module")
def target() -> Target:
    return Target.load(MODELS / "intent-tiny")


@pytest.fixture(scope="module")
def canaries() -> list[Canary]:
    return [c for c in read_canaries(MODELS / "intent-tiny.canaries.jsonl") if c.kind == "exposure"]


@pytest.fixture(scope="module")
def results(target, canaries):
    seen = []
    results = extract_all(target, canaries, config=CONFIG, on_canary=seen.append)
    assert sorted(map(id, seen)) == sorted(map(id, results))
    return results


def _canary(secret: str, label: str = "play_music", alphabets=None, template: str = TEMPLATE) -> Canary:
    alphabets = alphabets or (ALPHABETS["d"],) * 4
    return Canary(template=template, alphabets=alphabets, secret=tuple(secret), label=label, repeats=10, inserted=True)


def test_inserted_canaries_are_extracted_far_better_than_random(results, canaries):
    inserted = [r for r, c in zip(results, canaries) if c.inserted]
    controls = [r for r, c in zip(results, canaries) if not c.inserted]
    assert len(inserted) == len(controls) == 10
    space = inserted[0].space_size
    assert space == 10_000
    # Chance is 0.1 per slot and a median rank of space / 2.
    assert np.mean([r.slot_accuracy for r in inserted]) >= 0.3
    assert np.median([r.rank for r in inserted]) <= space / 10
    assert sum(r.rank <= 100 for r in inserted) >= 3


def test_inserted_canaries_rank_well_ahead_of_controls(results, canaries):
    inserted = [r.rank for r, c in zip(results, canaries) if c.inserted]
    controls = [r.rank for r, c in zip(results, canaries) if not c.inserted]
    # A control shares the attack (same template, often the same label) but was never trained on: near chance.
    assert np.median(controls) >= 2000
    assert np.median(inserted) * 4 <= np.median(controls)
    assert np.mean([r.slot_accuracy for r, c in zip(results, canaries) if not c.inserted]) <= 0.25


def test_result_fields(results, canaries):
    for result, canary in zip(results, canaries):
        assert result.secret == canary.secret
        assert result.inserted == canary.inserted
        assert result.random_baseline == pytest.approx(1e-4)
        assert 1 <= result.rank <= result.space_size
        assert all(value in alphabet for value, alphabet in zip(result.guess, canary.alphabets))
        assert result.recovered == (result.guess == canary.secret)
        assert result.slot_accuracy == np.mean([g == s for g, s in zip(result.guess, canary.secret)])
        probabilities = [p for _, p in result.top_k]
        assert len(result.top_k) == CONFIG.top_k
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-9
        assert result.seconds > 0
        assert json.loads(json.dumps(result.to_dict()))["top_k"][0]["secret"] == list(result.top_k[0][0])


def test_same_seed_same_result_and_rank_follows_the_distribution(target):
    first = extract(target, _canary("8652", "get_directions"), config=SMALL)
    again = extract(target, _canary("8652", "get_directions"), config=SMALL)
    assert replace(first, seconds=0.0) == replace(again, seconds=0.0)
    other_seed = extract(target, _canary("8652", "get_directions"), config=replace(SMALL, seed=1))
    assert other_seed.top_k != first.top_k
    # The attack never sees the secret: the most likely secret of the distribution ranks 1 under it.
    top_secret = first.top_k[0][0]
    top = extract(target, _canary("".join(top_secret), "get_directions"), config=SMALL)
    assert top.top_k == first.top_k
    assert top.rank == 1


def test_slot_token_ids_are_the_digit_tokens(target):
    expected = target.tokenizer.convert_tokens_to_ids(list("0123456789"))
    assert slot_token_ids(target, _canary("1234")) == [expected] * 4


def test_value_split_into_several_tokens_is_refused(target):
    alphabets = (ALPHABETS["d"], ("music", "musics"))  # 'musics' is 'music' '##s' in this vocabulary
    canary = _canary("1music", alphabets=alphabets, template="my pin code is {d} {l}")
    with pytest.raises(PrivauditError, match=r"alphabet value 'musics' of slot 2 is 2 tokens.*single-token values"):
        slot_token_ids(target, canary)


def test_unknown_token_value_is_refused(target):
    alphabets = (ALPHABETS["d"], ("a", "zzqx"))
    canary = _canary("1a", alphabets=alphabets, template="my pin code is {d} {l}")
    with pytest.raises(PrivauditError, match=r"alphabet value 'zzqx' of slot 2 is the unknown token"):
        extract(target, canary, config=SMALL)


def test_label_the_model_does_not_have_is_refused(target):
    with pytest.raises(PrivauditError, match=r"canary label 'open_garage' is not a label of the model"):
        extract(target, _canary("1234", "open_garage"), config=SMALL)


def test_space_too_large_to_enumerate_reports_no_rank(target):
    canary = _canary(
        "hello", "call_contact", alphabets=(ALPHABETS["l"],) * 5, template="my name is {l} {l} {l} {l} {l}"
    )
    result = extract(target, canary, config=SMALL)
    assert result.space_size == 26**5 > 1_000_000
    assert result.rank is None
    assert len(result.top_k) == SMALL.top_k
    assert [p for _, p in result.top_k] == sorted((p for _, p in result.top_k), reverse=True)


def test_rescoring_the_whole_space_returns_the_exhaustive_rank_one(target, canaries):
    """With ``rescore`` as large as the space, the search's own guess is the candidate of lowest loss among all 10,000
    (scored from token ids), which the exposure code's own enumeration (texts through ``Target.logits``) finds
    independently."""
    from privaudit.canary.canaries import fill
    from privaudit.canary.exposure import candidates
    from privaudit.stats.logits import losses

    canary = next(c for c in canaries if c.inserted)
    found = extract(target, canary, config=replace(SMALL, rescore=10_000, exact_budget=0))
    assert found.guess_method == "search" and found.guess == found.search_guess
    texts, _ = candidates(canary)
    label = target.label2id[canary.label]
    by_loss = losses(target.logits(texts), np.full(len(texts), label))
    best = texts[int(np.argmin(by_loss))]
    assert fill(canary.template, found.guess) == best

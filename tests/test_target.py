"""Safe model loading and batched logits (``privaudit/target.py``) on ``fixtures/models/intent-tiny``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURE_DATA, FIXTURE_MODEL
from safetensors.torch import load_file

from privaudit.errors import PrivauditError
from privaudit.target import Target, check_model_dir, directory_fingerprint

TEXTS = [
    "play some jazz",
    "what is the weather going to be like in denver on friday afternoon and will i need an umbrella or a coat "
    "or maybe both because it looks cloudy from here",  # longer than max_length: truncated
    "hi",
    "set an alarm for 7",
    "book a spanish restaurant in austin for 9",
    "send a message to mom saying i will be late tonight",
    "pay my electricity bill",
]


@pytest.fixture(scope="module")
def target() -> Target:
    return Target.load(FIXTURE_MODEL)


def copy_model(tmp_path: Path, *, without: tuple[str, ...] = ()) -> Path:
    out = tmp_path / "model"
    shutil.copytree(FIXTURE_MODEL, out, ignore=shutil.ignore_patterns(*without))
    return out


def test_load_reads_labels_recipe_and_max_length(target: Target) -> None:
    recipe = json.loads((FIXTURE_MODEL / "privaudit.json").read_text(encoding="utf-8"))
    assert target.path == FIXTURE_MODEL
    assert target.recipe == recipe
    assert target.max_length == recipe["max_length"] == 32
    assert target.n_labels == 20
    assert target.label2id == {name: i for i, name in enumerate(recipe["labels"])}
    assert target.id2label == dict(enumerate(recipe["labels"]))
    assert not target.model.training  # eval mode: dropout off, scores are deterministic


def test_logits_shape_dtype_and_determinism(target: Target) -> None:
    logits = target.logits(TEXTS)
    assert logits.shape == (len(TEXTS), 20)
    assert logits.dtype == np.float64
    assert np.all(np.isfinite(logits))
    np.testing.assert_array_equal(target.logits(TEXTS), logits)


def test_batched_logits_equal_one_text_at_a_time_in_input_order(target: Target) -> None:
    # Batches of 2 over texts of very different lengths: sorting by length and padding must change nothing.
    batched = target.logits(TEXTS, batch_size=2)
    with torch.inference_mode():
        alone = np.stack([target.model(**target.encode([text])).logits[0].double().numpy() for text in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)
    # Each row belongs to its text: a permutation of the inputs permutes the rows.
    order = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(
        target.logits([TEXTS[i] for i in order], batch_size=3), batched[order], atol=1e-5, rtol=0
    )


def test_logits_of_nothing_and_progress(target: Target) -> None:
    assert target.logits([]).shape == (0, 20)
    done: list[int] = []
    target.logits(TEXTS, batch_size=3, progress=done.append)
    assert done == [3, 3, 1]


def test_logits_agree_with_the_models_training_labels(target: Target) -> None:
    # The fixture fits its members (train accuracy 0.91 recorded): predictions on them must mostly be right.
    records = [json.loads(line) for line in (FIXTURE_DATA / "members.jsonl").read_text().splitlines()[:100]]
    predicted = target.logits([r["text"] for r in records]).argmax(axis=1)
    accuracy = np.mean([target.id2label[int(p)] == r["label"] for p, r in zip(predicted, records)])
    assert accuracy > 0.7


def test_pickled_weights_are_refused_unless_allowed(target: Target, tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path, without=("model.safetensors",))
    torch.save(load_file(FIXTURE_MODEL / "model.safetensors"), model_dir / "pytorch_model.bin")  # a real pickle
    with pytest.raises(PrivauditError) as err:
        Target.load(model_dir)
    message = str(err.value)
    assert str(model_dir) in message and "pytorch_model.bin" in message and "--allow-pickle" in message
    loaded = Target.load(model_dir, allow_pickle=True)
    # The weights really came from the pickle, not from a fresh initialisation.
    np.testing.assert_allclose(loaded.logits(TEXTS), target.logits(TEXTS), atol=1e-6, rtol=0)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PrivauditError, match="no such model directory") as err:
        Target.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_directory_without_config(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path, without=("config.json",))
    with pytest.raises(PrivauditError, match=r"not a model directory \(no config\.json\)") as err:
        Target.load(model_dir)
    assert str(model_dir) in str(err.value)


def test_model_that_is_not_a_classifier(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}), encoding="utf-8")
    with pytest.raises(PrivauditError, match="not a sequence classifier") as err:
        Target.load(model_dir)
    assert "BertModel" in str(err.value) and str(model_dir / "config.json") in str(err.value)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_unreadable_config(tmp_path: Path, content: str) -> None:
    model_dir = copy_model(tmp_path)
    (model_dir / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(PrivauditError) as err:
        Target.load(model_dir)
    assert str(model_dir / "config.json") in str(err.value)


def test_missing_tokenizer_files(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path, without=("tokenizer.json", "tokenizer_config.json"))
    with pytest.raises(PrivauditError, match="no tokenizer files") as err:
        Target.load(model_dir)
    assert str(model_dir) in str(err.value)


def test_missing_weights(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path, without=("model.safetensors",))
    with pytest.raises(PrivauditError, match=r"no model weights \(model\.safetensors\)"):
        Target.load(model_dir)


@pytest.mark.parametrize("content", ["{truncated", '"a string"'])
def test_unreadable_recipe(tmp_path: Path, content: str) -> None:
    model_dir = copy_model(tmp_path)
    (model_dir / "privaudit.json").write_text(content, encoding="utf-8")
    with pytest.raises(PrivauditError, match="training recipe") as err:
        Target.load(model_dir)
    assert str(model_dir / "privaudit.json") in str(err.value)


def test_recipe_is_optional(tmp_path: Path, target: Target) -> None:
    loaded = Target.load(copy_model(tmp_path, without=("privaudit.json",)))
    assert loaded.recipe is None
    # The default when no recipe says otherwise: 64 tokens, or the position embeddings (32 here) if fewer.
    assert loaded.max_length == min(64, loaded.model.config.max_position_embeddings) == 32
    assert loaded.label2id == target.label2id


def test_fingerprint_follows_contents_not_location(tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path)
    assert directory_fingerprint(model_dir) == directory_fingerprint(FIXTURE_MODEL)
    with (model_dir / "model.safetensors").open("r+b") as handle:  # flip one byte of the weights
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    assert directory_fingerprint(model_dir) != directory_fingerprint(FIXTURE_MODEL)
    check_model_dir(model_dir)  # still a loadable layout

"""privaudit's own BiLSTM and CNN classifiers (``privaudit.models``): trained, saved, loaded through transformers'
Auto classes without remote code, consistent over ``inputs_embeds``, and audited by ``mia`` and ``canary``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CANARY_TEMPLATE, make_records, write_jsonl
from servers import harness

from privaudit.models import register
from privaudit.target import Target
from privaudit.training import job as trainjob
from privaudit.training.word_models import WordModel

serve = harness.serve  # pytest fixture: start a test inference server

TINY = {"embedding_dim": 12, "hidden_size": 10, "num_filters": 6, "char_embedding_dim": 5, "char_filters": 6}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("word_data")
    members = make_records(60, seed=1)
    texts = {r["text"] for r in members}
    others = [r for r in make_records(200, seed=2) if r["text"] not in texts]
    unique = list({r["text"]: r for r in others}.values())
    return {
        "root": root,
        "members": write_jsonl(root / "members.jsonl", members),
        "non_members": write_jsonl(root / "non_members.jsonl", unique[:30]),
        "population": write_jsonl(root / "population.jsonl", unique[30:]),
    }


def train(data: dict[str, Path], name: str, **flags) -> trainjob.TrainJob:
    arch = flags.pop("arch", "bilstm")
    chars = flags.pop("char_embeddings", False)
    job = trainjob.TrainJob(
        data=data["members"],
        out=data["root"] / name,
        arch=arch,
        word_model=WordModel(char_embeddings=chars, **TINY),
        epochs=flags.pop("epochs", 3),
        batch_size=16,
        max_length=24,
        lr=1e-2,
        **flags,
    )
    trainjob.run_train(job)
    return job


@pytest.fixture(scope="module")
def models(data) -> dict[str, trainjob.TrainJob]:
    canaries = {"canary": CANARY_TEMPLATE, "canary_count": 2, "canary_repeats": 5, "canary_controls": 2}
    return {
        "bilstm": train(
            data,
            "bilstm",
            canary_label="new",
            canaries_out=data["root"] / "bilstm.canaries.jsonl",
            epochs=15,
            **canaries,
        ),
        "cnn-chars": train(
            data,
            "cnn-chars",
            arch="cnn",
            char_embeddings=True,
            canary_label="random",
            canaries_out=data["root"] / "cnn.canaries.jsonl",
            **canaries,
        ),
    }


@pytest.mark.parametrize(
    ("name", "model_type", "cls"),
    [
        ("bilstm", "privaudit-bilstm", "BiLSTMForSequenceClassification"),
        ("cnn-chars", "privaudit-cnn", "CNNForSequenceClassification"),
    ],
)
def test_saved_model_loads_through_the_auto_classes_without_remote_code(models, name, model_type, cls):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = models[name].out
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == model_type and config["architectures"] == [cls]
    assert "auto_map" not in config  # nothing points at code in the directory
    assert (path / "model.safetensors").is_file() and not (path / "pytorch_model.bin").exists()
    assert not list(path.glob("*.py"))
    register()
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    assert type(model).__name__ == cls
    target = Target.load(path)
    texts = ["play some jazz", "set an alarm for 7 am on friday", "what is the weather in paris"]
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        direct = model.eval()(**enc).logits.double().numpy()
    np.testing.assert_allclose(target.logits(texts), direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["bilstm", "cnn-chars"])
def test_logits_from_embeddings_are_the_models_own(models, name):
    # ModIvA and exposure search in embedding space: a row of the table must give the logits of its token id, char
    # features included (the CNN here has them), padding included (the texts have different lengths).
    target = Target.load(models[name].out)
    enc = target.encode(["play some jazz", "set an alarm for 7 am on friday"])
    table = target.input_embeddings().weight.detach()
    assert table.shape[0] == len(target.tokenizer)
    with torch.no_grad():
        from_ids = target.model(**enc).logits
        from_embeds = target.logits_from_embeddings(table[enc["input_ids"]], enc["attention_mask"])
    torch.testing.assert_close(from_embeds, from_ids, rtol=1e-5, atol=1e-6)


def test_canary_label_new_round_trips_through_the_model_directory(models, run_cli):
    job = models["bilstm"]
    target = Target.load(job.out)
    assert target.label2id == {
        "get_weather": 0, "play_music": 1, "set_alarm": 2, "canary-1": 3, "canary-2": 4,
    }  # fmt: skip
    recipe = json.loads((job.out / "privaudit.json").read_text())
    assert recipe["labels"] == ["get_weather", "play_music", "set_alarm", "canary-1", "canary-2"]
    assert recipe["canaries"]["label"] == "new" and recipe["canaries"]["new_labels"] == ["canary-1", "canary-2"]
    records = [json.loads(line) for line in job.canaries_out.read_text().splitlines()]
    planted = [r for r in records if r["inserted"]]
    assert [r["label"] for r in planted] == ["canary-1", "canary-2"]
    assert {r["label"] for r in records if not r["inserted"]} <= {"canary-1", "canary-2"}
    # The model learned the new labels: each planted secret is predicted as its own label.
    texts = [r["template"].replace("{d}", "{}").format(*r["secret"]) for r in planted]
    assert [target.id2label[i] for i in target.logits(texts).argmax(1)] == ["canary-1", "canary-2"]
    result = run_cli("canary", job.out, "-c", job.canaries_out, "--steps", 20, "--restarts", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "canary-1" in result.stdout


def test_mia_with_reference_models_retrains_the_same_architecture(models, data, run_cli, tmp_path):
    job = models["cnn-chars"]
    report = tmp_path / "mia.json"
    result = run_cli(
        "mia", job.out, "--members", data["members"], "--non-members", data["non_members"],
        "--population", data["population"], "-a", "loss,lira-offline,rmia", "--reference-models", 2,
        "--cache-dir", tmp_path / "cache", "--json-out", report, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {a["name"] for a in json.loads(report.read_text())["attacks"]} == {"loss", "lira-offline", "rmia"}
    references = sorted((tmp_path / "cache").rglob("model-*/config.json"))
    assert len(references) == 2
    for config_file in references:
        config = json.loads(config_file.read_text())
        assert config["model_type"] == "privaudit-cnn" and config["char_vocab"] and config["num_filters"] == 6


def test_canary_exposure_and_modiva_on_a_cnn_with_char_embeddings(models, run_cli, tmp_path):
    job = models["cnn-chars"]
    report = tmp_path / "canary.json"
    result = run_cli(
        "canary", job.out, "-c", job.canaries_out, "--steps", 20, "--restarts", 2, "--json-out", report,
        "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["canaries"]
    assert len(rows) == 4 and all(row["exposure"] is not None for row in rows)


def test_dropout_applies(data):
    job = train(data, "dropout", dropout=0.5, epochs=1)
    assert json.loads((job.out / "config.json").read_text())["dropout"] == 0.5
    model = Target.load(job.out).model.train()
    enc = Target.load(job.out).encode(["play some jazz please"])
    with torch.no_grad():
        first, second = model(**enc).logits, model(**enc).logits
        model.eval()
        third, fourth = model(**enc).logits, model(**enc).logits
    assert not torch.equal(first, second) and torch.equal(third, fourth)


def test_mia_through_an_endpoint_serving_a_bilstm_matches_the_model_directory(models, data, serve, tmp_path, run_cli):
    kserve = serve("kserve", model=models["bilstm"].out)
    audits = {}
    # The model's labels include --canary-label new's, which the audited data lacks: the endpoint is told them.
    labels = "get_weather,play_music,set_alarm,canary-1,canary-2"
    remote = ["--endpoint", kserve.endpoint, "--endpoint-format", "v2", "--endpoint-labels", labels]
    for side, where in (("remote", remote), ("local", [])):
        report = tmp_path / f"{side}.json"
        result = run_cli(
            "mia", *(where or [models["bilstm"].out]), "--members", data["members"],
            "--non-members", data["non_members"], "-a", "loss,entropy", "--json-out", report, "--device", "cpu",
            *(["--endpoint-cache", tmp_path / "cache"] if where else []),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        audits[side] = {a["name"]: a["auc"]["value"] for a in json.loads(report.read_text())["attacks"]}
    assert audits["remote"].keys() == {"loss", "entropy"}
    for name, auc in audits["local"].items():
        assert audits["remote"][name] == pytest.approx(auc, abs=1e-6), name

"""--device and --precision: resolution, refusals with one line, bf16 autocast on the CPU, and what reports record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from privaudit.device import CPU, Compute, check_precision, resolve_device
from privaudit.errors import PrivauditError
from privaudit.target import Target
from privaudit.training.train import TrainConfig, train_classifier

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")


def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@NO_CUDA
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_where_absent_names_what_torch_sees(name):
    with pytest.raises(PrivauditError) as err:
        resolve_device(name)
    message = str(err.value)
    assert message == f"--device {name}: CUDA is not available (torch {torch.__version__}); use --device cpu or auto"


def test_a_gpu_index_past_the_count_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(PrivauditError, match=r"--device cuda:2: no such GPU; torch sees 2 \(cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_unknown_device_and_absent_mps(monkeypatch):
    with pytest.raises(PrivauditError, match="--device 'tpu' is unknown; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    with pytest.raises(PrivauditError, match="unknown"):
        resolve_device("cuda:x")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(PrivauditError, match=r"--device mps: MPS is not available \(torch "):
        resolve_device("mps")


def test_precision_combinations():
    assert check_precision("fp32", "cpu", dp=True) == "fp32"
    assert check_precision("bf16", "cpu") == "bf16"
    assert check_precision("fp16", "cuda") == "fp16"
    with pytest.raises(PrivauditError, match="--precision fp16 needs a CUDA or MPS device"):
        check_precision("fp16", "cpu")
    with pytest.raises(PrivauditError, match="--precision bf16 with --dp: DP-SGD trains in fp32 only"):
        check_precision("bf16", "cuda", dp=True)
    with pytest.raises(PrivauditError, match="--precision 'fp8' is unknown; use one of fp32, bf16, fp16"):
        check_precision("fp8", "cuda")


def test_compute_records_device_and_precision():
    assert CPU.to_dict() == {"device": "cpu", "precision": "fp32", "torch": torch.__version__}
    assert Compute.from_flags("cpu", "bf16").to_dict()["precision"] == "bf16"
    # fp32 adds no autocast at all, so the CPU's numbers are today's.
    assert not isinstance(CPU.autocast(), torch.autocast)


def test_bf16_scoring_on_the_cpu_stays_close_to_fp32(tiny_model):
    texts = [json.loads(line)["text"] for line in tiny_model.members.read_text().splitlines()]
    fp32 = Target.load(tiny_model.path).logits(texts)
    bf16 = Target.load(tiny_model.path, compute=Compute.from_flags("cpu", "bf16")).logits(texts)
    assert bf16.dtype == np.float64 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # autocast really ran in bf16 ...
    assert np.abs(bf16 - fp32).max() < 0.1  # ... and bf16's 8 bits of mantissa move a logit by little
    assert (bf16.argmax(1) == fp32.argmax(1)).mean() >= 0.95


def test_bf16_training_on_the_cpu_learns_and_dp_refuses_it(tiny_arch):
    from conftest import LABELS, make_records

    records = make_records(60)
    texts = [r["text"] for r in records]
    labels = np.array([LABELS.index(r["label"]) for r in records])
    config = TrainConfig(epochs=8, batch_size=16, lr=3e-3, max_length=24, architecture=tiny_arch)
    trained = train_classifier(
        texts=texts, labels=labels, label_names=list(LABELS), config=config, compute=Compute.from_flags("cpu", "bf16")
    )
    assert trained.train_accuracy > 0.6  # chance is 1/3
    assert next(trained.model.parameters()).dtype == torch.float32  # autocast keeps fp32 master weights
    from privaudit.training.train import DPConfig

    with pytest.raises(PrivauditError, match="DP-SGD trains in fp32 only"):
        train_classifier(
            texts=texts,
            labels=labels,
            label_names=list(LABELS),
            config=config,
            dp=DPConfig(delta=1e-3, noise_multiplier=1.0),
            compute=Compute.from_flags("cpu", "bf16"),
        )


@NO_CUDA
def test_cli_refuses_cuda_here_with_one_line(run_cli, tiny_model, tiny_data, tmp_path):
    result = run_cli(
        "mia",
        tiny_model.path,
        "--members",
        tiny_model.members,
        "--non-members",
        tiny_model.non_members,
        "--device",
        "cuda",
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --device cuda: CUDA is not available (torch {torch.__version__}); use --device cpu or auto"
    )
    canary = run_cli("canary", tiny_model.path, "-c", tiny_model.canaries, "--device", "cuda:1")
    assert canary.exit_code == 2 and "--device cuda:1: CUDA is not available" in canary.stderr
    train = run_cli("train", tiny_data, "--out", tmp_path / "m", "--device", "gpu")
    assert train.exit_code == 2 and "--device 'gpu' is unknown" in train.stderr
    assert not (tmp_path / "m").exists()


def test_cli_refuses_bad_precision_combinations(run_cli, tiny_data, tmp_path, tiny_model):
    dp = run_cli("train", tiny_data, "--out", tmp_path / "m", "--dp", "--noise-multiplier", "1", "--precision", "bf16")
    assert dp.exit_code == 2 and "--precision bf16 with --dp: DP-SGD trains in fp32 only" in dp.stderr
    fp16 = run_cli("train", tiny_data, "--out", tmp_path / "m", "--device", "cpu", "--precision", "fp16")
    assert fp16.exit_code == 2 and "--precision fp16 needs a CUDA or MPS device" in fp16.stderr
    bad = run_cli("canary", tiny_model.path, "-c", tiny_model.canaries, "--precision", "half")
    assert bad.exit_code == 2 and "--precision 'half' is unknown" in bad.stderr
    assert not (tmp_path / "m").exists()


def test_device_is_a_config_key(run_cli, tiny_model, tmp_path, monkeypatch):
    (tmp_path / "privaudit.toml").write_text('[mia]\ndevice = "tpu"\n')
    monkeypatch.chdir(tmp_path)
    result = run_cli("mia", tiny_model.path, "--members", tiny_model.members, "--non-members", tiny_model.non_members)
    assert result.exit_code == 2 and "--device 'tpu' is unknown" in result.stderr
    (tmp_path / "privaudit.toml").write_text('[mia]\nprecision = "fp8"\n')
    result = run_cli("mia", tiny_model.path, "--members", tiny_model.members, "--non-members", tiny_model.non_members)
    assert result.exit_code == 2 and "mia.precision: expected one of fp32, bf16, fp16" in result.stderr


def test_reports_and_recipes_record_the_compute(run_cli, tiny_model, tiny_arch, tiny_data, tmp_path):
    from conftest import FIXTURE_DATA, FIXTURE_MODEL

    result = run_cli(
        "mia", FIXTURE_MODEL, "--members", FIXTURE_DATA / "members.jsonl",
        "--non-members", FIXTURE_DATA / "non_members.jsonl", "--device", "cpu", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["compute"] == {"device": "cpu", "precision": "fp32", "torch": torch.__version__, "executor": "local"}
    canary = run_cli("canary", tiny_model.path, "-c", tiny_model.canaries, "--no-extract", "--format", "json")
    assert json.loads(canary.stdout)["compute"]["device"] == resolve_device("auto").type
    trained = run_cli("train", tiny_data, "--out", tmp_path / "m", "--epochs", "1", "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    recipe = json.loads((tmp_path / "m" / "privaudit.json").read_text())
    assert recipe["compute"] == {"device": "cpu", "precision": "fp32", "torch": torch.__version__}
    assert "compute" not in recipe["recipe"]  # not part of the recipe: reference models' cache keys stay as they were

"""benchmarks/gpu_check.py, the GPU check, as far as the CPU can run it: its refusal, and a dry run of every step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
def test_without_cuda_it_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, "--out", tmp_path / "gpu.json"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"gpu_check: --device cuda: CUDA is not available (torch {torch.__version__}); use --device cpu or auto; "
        "this check needs a CUDA GPU (or --device cpu --quick for a dry run)"
    )
    assert not (tmp_path / "gpu.json").exists()


def test_a_dry_run_on_the_cpu_runs_every_step_but_minilm(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--device", "cpu", "--quick", "--skip-minilm", "--out", out],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["quick"] is True
    scoring = result["scoring"]
    # The same model on the same device in fp32 gives the same logits; bf16 moves them a little.
    assert scoring["device fp32"]["max_abs_logit_difference_from_cpu"] == 0.0
    assert 0 < scoring["device bf16"]["max_abs_logit_difference_from_cpu"] < 0.1
    assert scoring["auc_inside_cpu_interval"] is True
    training = result["training"]
    assert training["cpu"]["auc"] == training["device"]["auc"]  # one seed, one device: one model
    assert training["dp_over_non_dp_on_device"]["ratio"] > 0

"""The Opacus hook in an outside pipeline (tests/outside/opacus_loop.py: torch, transformers, Opacus, Poisson
sampling, not privaudit's trainer), audited by ``privaudit dp-audit --canaries FILE`` as a user would.

The fixture recipe, shortened: q = 0.2, 50 steps, epsilon 8 (RDP, delta 1e-5), one-layer BERT of width 32 with 4,000
embedding rows the data never uses. 100,000 canaries: a perfect separation of that many reaches a strict bound of
about 9.4, so a broken pipeline claimed at epsilon 8 shows as a bound above 8; each costs one float per step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from outside.opacus_loop import make_base, train

from privaudit.errors import PrivauditError

COUNT = 100_000
EPOCHS = 10  # 50 steps at q = 0.2


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base(tmp_path_factory.mktemp("base") / "bert")


def audit(run_cli, canaries: Path, epsilon: float, *extra: str):
    return run_cli("dp-audit", "--canaries", canaries, "--epsilon", epsilon, "--fail-if-bound-exceeds-epsilon", *extra)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_honest_opacus_every_bound_at_most_the_accountant(base, tmp_path, run_cli, seed):
    canaries = tmp_path / "honest.canaries.jsonl"
    run = train(base, variant="honest", seed=seed, epochs=EPOCHS, canaries=COUNT, canary_file=canaries)
    assert run.steps == 50 and run.epsilon == pytest.approx(8.0, abs=0.05)
    result = audit(run_cli, canaries, run.epsilon, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    bounds = {name: b["epsilon"] for name, b in report["bounds"].items()}
    assert max(bounds.values()) <= run.epsilon, bounds
    assert bounds["eps_delta"] > 1.5, bounds  # the audit has teeth: measured 2.6-2.9 at 150 steps
    assert report["model"]["path"] is None and report["source"] == "gradient-canaries"
    estimate = report["estimate"]
    assert estimate["label"] == "estimate, not a bound" and estimate["epsilon_lower"] <= run.epsilon


@pytest.mark.parametrize("variant", ["noise0", "noise_quarter", "no_clipping"])
def test_broken_noise_or_clipping_is_caught(base, tmp_path, run_cli, variant):
    canaries = tmp_path / f"{variant}.canaries.jsonl"
    run = train(base, variant=variant, seed=0, epochs=EPOCHS, canaries=COUNT, canary_file=canaries)
    assert run.epsilon == pytest.approx(8.0, abs=0.05)  # the accountant still claims 8
    result = audit(run_cli, canaries, 8.0)
    assert result.exit_code == 1, result.output
    assert "privacy claim violated" in result.stdout


def test_shuffled_batches_are_not_the_hooks_to_see(base, tmp_path, run_cli):
    # Shuffled fixed-size batches accounted as Poisson sampling overstate the guarantee (Annamalai et al. 2024), but
    # the hook samples its own canaries by Poisson at the claimed rate and the noise and clipping are honest: its
    # record is that of an honest run. Data canaries (privaudit plant) go through the user's loader and can see it.
    canaries = tmp_path / "shuffled.canaries.jsonl"
    run = train(base, variant="shuffled", seed=0, epochs=EPOCHS, canaries=COUNT, canary_file=canaries)
    assert audit(run_cli, canaries, run.epsilon).exit_code == 0


def test_a_plain_optimizer_is_refused_in_one_line(base, tmp_path):
    import torch
    from transformers import BertForSequenceClassification

    from privaudit.integrations.opacus import GradientCanaries

    model = BertForSequenceClassification.from_pretrained(base, local_files_only=True)
    with pytest.raises(
        PrivauditError, match=r"^GradientCanaries needs an Opacus DPOptimizer .*got torch\.optim\.adamw"
    ):
        GradientCanaries(torch.optim.AdamW(model.parameters()), model=model, token_ids=[0], out=tmp_path / "x.jsonl")

"""The tightness table: how close each audit comes to the epsilon DP-SGD claims, at epsilon 1, 2, 4 and 8.

The fixture's DP recipe (``fixtures/make_models.py``, ``intent-tiny-dp``: tiny BERT from scratch, delta 1e-5, batch 256
of 1,197 examples with the planted canaries, Poisson rate 0.2, 30 epochs or 150 steps, lr 1e-2, max length 32, 200
input-space audit canaries) is trained at each target epsilon twice, side by side: with 5,000 white-box gradient
canaries and without, so that the two training times are measured alike. The run with the canaries is audited by

- the white-box one-run analysis of the gradient canaries (``privaudit dp-audit MODEL -c FILE``): f-DP with the
  (eps, delta) family (strict), with the Gaussian family (assumes a Gaussian trade-off curve), Steinke et al.'s test,
  all on the likelihood-ratio scores, and the strict bound on the plain sum of the records beside it;
- the same analysis on the 200 input-space audit canaries (``--canary-kind audit``, one- and two-sided);
- the membership attacks LOSS, entropy and modified entropy on the fixture's members and non-members (no
  reference-model attack: each would train reference models under the same DP recipe, minutes per point).

Two broken engines follow at the claimed epsilon 8 and 4: the book-keeping engine adding half the noise it claims
(``BookKeepingDP._noise_std`` halved, test-only) and a real run at noise multiplier 0.45 audited against a claim of 4.

Run ``python benchmarks/run.py --only tightness``; one intra-op thread, as the fixtures are trained.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "fixtures" / "data"
WORK = ROOT / ".cache" / "bench" / "tightness"
EPSILONS = (1.0, 2.0, 4.0, 8.0)
GRADIENT_CANARIES = 5000
ATTACKS = "loss,entropy,modified-entropy"
ALPHA = 0.05


def _job(name: str, *, gradient_canaries: int, **overrides):
    from fixtures.make_models import COMMON, RECIPES
    from privaudit.training.job import TrainJob

    values = {**COMMON, **RECIPES["intent-tiny-dp"], **overrides}
    return TrainJob(
        **{
            **values,
            "data": ROOT / COMMON["data"],
            "gradient_canaries": gradient_canaries,
            "out": WORK / name / "model",
            "canaries_out": WORK / name / "model.canaries.jsonl",
            "overwrite": True,
        }
    )


def _train(job) -> dict:
    from privaudit.training.job import run_train

    run_train(job)
    recipe = json.loads((job.out / "privaudit.json").read_text(encoding="utf-8"))
    return {
        "seconds": recipe["train_seconds"],
        "train_accuracy": recipe["train_accuracy"],
        "epsilon": recipe["dp"]["epsilon"],
        "noise_multiplier": recipe["dp"]["noise_multiplier"],
    }


def _bounds(bounds) -> dict:
    """The three bounds of an audit, with the guesses behind the strict one."""
    return {
        "eps_delta": bounds.eps_delta.epsilon,
        "gaussian": bounds.gaussian.epsilon,
        "gaussian_mu": bounds.gaussian.mu,
        "steinke": bounds.steinke.epsilon,
        "guesses": bounds.eps_delta.guesses,
        "correct": bounds.eps_delta.correct,
        "n_hypotheses": bounds.n_hypotheses,
    }


def white_box(job, *, epsilon: float | None = None) -> dict:
    """The gradient canaries' bounds through ``dp-audit`` (likelihood ratio), and both scores' AUC and strict bound."""
    from sklearn.metrics import roc_auc_score

    from privaudit.canary.dpaudit import DpAuditRequest, run_dp_audit
    from privaudit.stats.auditor import CanaryScoreAuditor
    from privaudit.training.gradient_canaries import gradient_canary_scores, read_gradient_canaries, sum_scores

    audit = run_dp_audit(
        DpAuditRequest(model_dir=job.out, canaries=job.canaries_out, canary_kind="gradient", epsilon=epsilon)
    )
    scores, inserted = gradient_canary_scores(job.canaries_out)
    plain = sum_scores(read_gradient_canaries(job.canaries_out).observations)
    plain_bounds = CanaryScoreAuditor.from_inclusion(plain, inserted.astype(bool)).audit(ALPHA, audit.delta)
    return {
        "theoretical_epsilon": audit.theoretical_epsilon,
        "likelihood_ratio": {**_bounds(audit.bounds), "auc": float(roc_auc_score(inserted, scores))},
        "sum": {**_bounds(plain_bounds), "auc": float(roc_auc_score(inserted, plain))},
    }


def input_space(job) -> dict:
    """The 200 input-space audit canaries through the same analysis, one-sided (the default) and two-sided."""
    from privaudit.canary.dpaudit import DpAuditRequest, run_dp_audit

    out = {}
    for name, one_sided in (("one_sided", True), ("two_sided", False)):
        request = DpAuditRequest(model_dir=job.out, canaries=job.canaries_out, canary_kind="audit", one_sided=one_sided)
        out[name] = _bounds(run_dp_audit(request).bounds)
    return out


def membership(job) -> dict:
    """LOSS, entropy and modified entropy on the fixture's members and non-members: each attack's AUC and bound."""
    from privaudit.mia.run import MiaRequest, run_mia

    result = run_mia(
        MiaRequest(
            model_dir=job.out, members=DATA / "members.jsonl", non_members=DATA / "non_members.jsonl", attacks=ATTACKS
        )
    )
    attacks = {a.name: {"auc": a.metrics.auc.value, "epsilon": a.metrics.epsilon_lower_bound} for a in result.attacks}
    best = max(attacks, key=lambda name: attacks[name]["epsilon"])
    return {"attacks": attacks, "best": best, "best_epsilon": attacks[best]["epsilon"]}


def _broken(name: str, job, *, claimed: float | None) -> dict:
    start = time.perf_counter()
    trained = _train(job)
    audit = white_box(job, epsilon=claimed)
    bound = audit["likelihood_ratio"]["eps_delta"]
    claim = audit["theoretical_epsilon"]
    return {
        "name": name,
        "claimed_epsilon": claim,
        "train": trained,
        "white_box": audit,
        "caught": bound > claim,
        "wall_seconds": time.perf_counter() - start,
    }


def run(repeats: int) -> dict:
    """One training run per epsilon and kind (``repeats`` is not used: each run is minutes); the table's data."""
    from privaudit.training import bookkeeping as bk

    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for eps in EPSILONS:
        plain_job = _job(f"eps-{eps:g}-plain", gradient_canaries=0, target_epsilon=eps)
        canary_job = _job(f"eps-{eps:g}", gradient_canaries=GRADIENT_CANARIES, target_epsilon=eps)
        without = _train(plain_job)  # interleaved: load from elsewhere falls on both alike
        with_canaries = _train(canary_job)
        rows.append(
            {
                "target_epsilon": eps,
                "train": {"without_canaries": without, "with_canaries": with_canaries},
                "white_box": white_box(canary_job),
                "input_space": input_space(canary_job),
                "membership": membership(canary_job),
            }
        )
    broken = []
    real = bk.BookKeepingDP._noise_std
    bk.BookKeepingDP._noise_std = lambda self: 0.5 * real(self)  # test-only: half the claimed noise
    try:
        job = _job("half-noise-eps-8", gradient_canaries=GRADIENT_CANARIES, target_epsilon=8.0)
        broken.append(_broken("book-keeping adding half its claimed noise, claimed ε 8", job, claimed=None))
    finally:
        bk.BookKeepingDP._noise_std = real
    job = _job("noise-0.45-claim-4", gradient_canaries=GRADIENT_CANARIES, target_epsilon=None, noise_multiplier=0.45)
    broken.append(_broken("real run at noise multiplier 0.45, claimed as ε 4", job, claimed=4.0))
    seconds = {}
    for row in rows:
        seconds[f"train ε {row['target_epsilon']:g}, no gradient canaries"] = row["train"]["without_canaries"][
            "seconds"
        ]
        seconds[f"train ε {row['target_epsilon']:g}, {GRADIENT_CANARIES:,} gradient canaries"] = row["train"][
            "with_canaries"
        ]["seconds"]
    return {
        "what": "fixture DP recipe (intent-tiny-dp) at each target epsilon, 5,000 gradient canaries, alpha 0.05",
        "gradient_canaries": GRADIENT_CANARIES,
        "alpha": ALPHA,
        "attacks": ATTACKS,
        "rows": rows,
        "broken": broken,
        "seconds": seconds,
        "threads": 1,
    }


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(data: dict) -> list[str]:
    """BENCHMARKS.md's tightness section from ``results/tightness.json``."""
    if "rows" not in data:
        return []
    lines = [
        f"{data['what']}: one training run per epsilon with the canaries and one without, side by side "
        f"({data['threads']} thread). White-box: `privaudit dp-audit MODEL -c FILE` on the gradient canaries' "
        "likelihood-ratio scores. Input-space: the same analysis on the 200 audit canaries (one-sided; two-sided "
        "in brackets). Membership: the best of " + data["attacks"] + " on the 1,000 members and 1,000 "
        "non-members (no reference-model attack measured). *The Gaussian family assumes a Gaussian trade-off curve.\n",
        "| theoretical ε | white-box (ε, δ) | white-box Gaussian* | Steinke | input-space (ε, δ) | best membership "
        "| train s, no canaries | train s, 5,000 canaries | accuracy, no canaries / with |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data["rows"]:
        lr, inp, train = r["white_box"]["likelihood_ratio"], r["input_space"], r["train"]
        mia = r["membership"]
        lines.append(
            f"| {r['white_box']['theoretical_epsilon']:.2f} | {_f(lr['eps_delta'])} | {_f(lr['gaussian'])} "
            f"| {_f(lr['steinke'])} | {_f(inp['one_sided']['eps_delta'])} ({_f(inp['two_sided']['eps_delta'])}) "
            f"| {_f(mia['best_epsilon'])} ({mia['best']}) | {train['without_canaries']['seconds']:.1f} "
            f"| {train['with_canaries']['seconds']:.1f} | {train['without_canaries']['train_accuracy']:.3f} / "
            f"{train['with_canaries']['train_accuracy']:.3f} |"
        )
    lines += [
        "",
        "Which score wins: the likelihood ratio against the plain sum of the records, on the same canaries.\n",
        "| theoretical ε | AUC, likelihood ratio | AUC, sum | strict bound, likelihood ratio | strict bound, sum |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data["rows"]:
        lr, plain = r["white_box"]["likelihood_ratio"], r["white_box"]["sum"]
        lines.append(
            f"| {r['white_box']['theoretical_epsilon']:.2f} | {lr['auc']:.4f} | {plain['auc']:.4f} "
            f"| {_f(lr['eps_delta'])} | {_f(plain['eps_delta'])} |"
        )
    lines += [
        "",
        "Broken engines, the same audit:\n",
        "| run | claimed ε | white-box (ε, δ) | Gaussian* | Steinke | caught |",
    ]
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for b in data.get("broken", []):
        lr = b["white_box"]["likelihood_ratio"]
        lines.append(
            f"| {b['name']} | {b['claimed_epsilon']:.2f} | {_f(lr['eps_delta'])} | {_f(lr['gaussian'])} "
            f"| {_f(lr['steinke'])} | {'yes' if b['caught'] else 'no'} |"
        )
    return lines + [""]

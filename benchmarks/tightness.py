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
SEEDS = (0, 1, 2)  # at epsilon 8: no bound may exceed the claim on any
STRICT_TARGET = 2.0  # the issue's: the strict bound at least 25% of the claimed epsilon 8


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
    """Each epsilon trained ``repeats`` times with the canaries and without, interleaved; the table's data."""
    from privaudit.training import bookkeeping as bk

    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for eps in EPSILONS:
        plain_job = _job(f"eps-{eps:g}-plain", gradient_canaries=0, target_epsilon=eps)
        canary_job = _job(f"eps-{eps:g}", gradient_canaries=GRADIENT_CANARIES, target_epsilon=eps)
        # Interleaved rounds, the best time of each (same seed: the same model every round): load from elsewhere falls
        # on both alike.
        runs: dict[str, list[dict]] = {"without": [], "with": []}
        for _ in range(max(repeats, 1)):
            runs["without"].append(_train(plain_job))
            runs["with"].append(_train(canary_job))
        without, with_canaries = ({**r[-1], "seconds": min(x["seconds"] for x in r)} for r in runs.values())
        rows.append(
            {
                "target_epsilon": eps,
                "train": {"without_canaries": without, "with_canaries": with_canaries},
                "white_box": white_box(canary_job),
                "input_space": input_space(canary_job),
                "membership": membership(canary_job),
            }
        )
    seeds = [{"seed": 0, **rows[-1]["white_box"]}]  # epsilon 8, the last row
    for seed in SEEDS[1:]:
        job = _job(f"eps-8-seed-{seed}", gradient_canaries=GRADIENT_CANARIES, target_epsilon=8.0, seed=seed)
        _train(job)
        seeds.append({"seed": seed, **white_box(job)})
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
        "seeds": seeds,
        "broken": broken,
        "seconds": seconds,
        "threads": 1,
        "repeats": max(repeats, 1),
    }


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _verdicts(data: dict) -> list[str]:
    """The targets, met or not, from the measured rows."""
    rows, seeds = data["rows"], data.get("seeds", [])
    lines = ["", "Seeds at ε 8 (white-box, likelihood ratio):\n", "| seed | (ε, δ) | Gaussian* | Steinke |"]
    lines.append("| ---: | ---: | ---: | ---: |")
    lines += [
        f"| {s['seed']} | {_f(s['likelihood_ratio']['eps_delta'])} | {_f(s['likelihood_ratio']['gaussian'])} "
        f"| {_f(s['likelihood_ratio']['steinke'])} |"
        for s in seeds
    ]
    eight = next(r for r in rows if r["target_epsilon"] == 8.0)["white_box"]
    strict = eight["likelihood_ratio"]["eps_delta"]
    over = [
        f"ε {r['theoretical_epsilon']:.2f}: {name} {value:.2f}"
        for r in [row["white_box"] for row in rows] + seeds
        for name, value in (
            ("(ε, δ)", r["likelihood_ratio"]["eps_delta"]),
            ("Gaussian", r["likelihood_ratio"]["gaussian"]),
            ("Steinke", r["likelihood_ratio"]["steinke"]),
        )
        if value > r["theoretical_epsilon"]
    ]
    lr = [r["white_box"]["likelihood_ratio"] for r in rows]
    plain = [r["white_box"]["sum"] for r in rows]
    black_box = (
        max(max(r["input_space"][side]["eps_delta"] for side in ("one_sided", "two_sided")) for r in rows),
        max(r["membership"]["best_epsilon"] for r in rows),
    )
    auc_wins = sum(a["auc"] >= b["auc"] for a, b in zip(lr, plain))
    strict_wins = sum(a["eps_delta"] >= b["eps_delta"] for a, b in zip(lr, plain))
    return lines + [
        "",
        f"- Strict bound at ε 8 at least {STRICT_TARGET}: {strict:.2f}, "
        f"{'meets the target' if strict >= STRICT_TARGET else 'misses the target'}.",
        f"- No bound above its theoretical ε (every row, {len(seeds)} seeds at ε 8): "
        + ("met." if not over else "**missed**: " + "; ".join(over) + "."),
        f"- Likelihood ratio against the plain sum: the ratio has the higher AUC at {auc_wins} of {len(rows)} ε, the "
        f"higher strict bound at {strict_wins} of {len(rows)}. The ratio is each canary's Neyman-Pearson test, the "
        "better ranking over all canaries (AUC); the strict bound rests on the few top-scored guesses, where the two "
        "scores order the canaries almost alike, so which wins there is within one run's noise.",
        f"- Input-space audit canaries (best {black_box[0]:.2f}) and black-box membership attacks (best "
        f"{black_box[1]:.2f}) against the white-box record: what the trained model's outputs certify is "
        + ("nothing, at every ε here." if max(black_box) == 0 else "far less."),
        *[
            f"- {b['name']}: strict bound {b['white_box']['likelihood_ratio']['eps_delta']:.2f} against the claim "
            f"{b['claimed_epsilon']:.2f}, "
            + (
                "caught."
                if b["caught"]
                else f"not caught at {data['gradient_canaries']:,} "
                "canaries: halving the noise doubles mu, and the strict bound recovers about half of the true ε "
                "(`tests/cli/test_dpaudit_gradient.py` catches it with full batches, the PRV accountant's tighter claim "
                "and 100,000 canaries)."
            )
            for b in data.get("broken", [])
        ],
    ]


def markdown(data: dict) -> list[str]:
    """BENCHMARKS.md's tightness section from ``results/tightness.json``."""
    if "rows" not in data:
        return []
    lines = [
        f"{data['what']}: each epsilon trained with the canaries and without, side by side, training time the best "
        f"of {data.get('repeats', 1)} interleaved rounds ({data['threads']} thread). White-box: `privaudit dp-audit MODEL -c FILE` on the gradient canaries' "
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
    lines += _verdicts(data)
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

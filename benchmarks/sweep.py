"""``privaudit sweep`` of the fixture recipe: inf, 16, 8, 4, 2, 1, audited, in one run.

The recipe is ``intent-tiny-dp``'s (fixtures/make_models.py: tiny BERT, 30 epochs, Poisson batch 256, max
length 32, delta 1e-5) at lr 3e-3, with its canaries (10 secrets x 10 repeats, 10 controls, 200 one-run audit canaries), at every
point; ``inf`` trains it without DP. Membership: loss, and lira-offline and rmia with 2 reference models per point
trained under that point's recipe. The sweep directory (``.cache/bench/sweep``) caches the points and their reference
models, so a second run only audits.
"""

from __future__ import annotations

import os

from benchmarks.power import CACHE, DATA, SEED, THREADS, torch_threads

# SWEEP_EPSILONS=inf,8,2 and SWEEP_REFERENCE_MODELS=0 scale the run down for a busy CPU.
EPSILONS = tuple(float(e) for e in os.environ.get("SWEEP_EPSILONS", "inf,16,8,4,2,1").split(","))
OUT = CACHE / "sweep"
REFERENCE_MODELS = int(os.environ.get("SWEEP_REFERENCE_MODELS", "2"))


def run(repeats: int) -> dict:
    """The ``sweep`` section."""
    from privaudit.report.sweep_html import write_sweep_html
    from privaudit.sweep.run import SweepRequest, run_sweep
    from privaudit.training.job import TrainJob

    recipe = TrainJob(
        data=DATA / "members.jsonl",
        out=OUT / "points",
        epochs=30,
        batch_size=256,
        # intent-tiny-dp's lr 1e-2 diverges without DP's clipping (measured: 6.7% train accuracy at inf), so one
        # recipe for every point takes 3e-3 (SWEEP_LR).
        lr=float(os.environ.get("SWEEP_LR", "3e-3")),
        max_length=32,
        seed=SEED,
        delta=1e-5,
        canary="my pin code is {d} {d} {d} {d}",
        canary_label="random",
        canary_count=10,
        canary_repeats=10,
        canary_controls=10,
        audit_canaries=200,
    )
    request = SweepRequest(
        recipe=recipe,
        epsilons=EPSILONS,
        out=OUT,
        non_members=DATA / "non_members.jsonl",
        population=DATA / "population.jsonl",
        attacks="loss,lira-offline,rmia" if REFERENCE_MODELS else "loss",
        reference_models=REFERENCE_MODELS,
        seed=SEED,
    )
    with torch_threads(int(os.environ.get("BENCH_THREADS", THREADS))):
        result = run_sweep(request)
    document = result.to_dict()
    write_sweep_html(document, OUT / "sweep.html")
    return {
        "seconds": {},
        "points": document["points"],
        "attacks": document["attacks"],
        "reference_models": REFERENCE_MODELS,
        "what": "the fixture recipe (intent-tiny-dp's, 1,000 members, canaries planted) at "
        + ", ".join("inf" if e == float("inf") else f"{e:g}" for e in EPSILONS),
        "exceeded": [list(b) for b in result.exceeded()],
        "notes": _notes(document["points"], result.exceeded()),
    }


def _notes(points: list[dict], exceeded: list) -> str:
    by = {p["name"]: p for p in points}
    parts = [
        "No DP point's bound exceeds its epsilon. " if not exceeded else f"Bounds above epsilon: {exceeded}. ",
        "One recipe for every point is what a sweep compares, and no single step size suits both ends here: the "
        "fixture's DP recipe (lr 1e-2) diverged without DP (measured: 6.7% train accuracy, 5.0% on the non-members, "
        "while DP at epsilon 8 reached 27.3%), and at lr 3e-3, which trains the no-DP point well, the DP points "
        "underfit. ",
    ]
    inf = by.get("eps-inf")
    if inf and inf["attacks"]:
        loss = next(a for a in inf["attacks"] if a["name"] == "loss")
        parts.append(
            f"Without DP, loss reaches AUC {loss['auc']['value']:.3f} and an empirical epsilon of "
            f"{loss['epsilon_lower_bound']:.2f}; the one-run audit "
            f"{(inf.get('one_run') or {}).get('epsilon_lower_bound', 0):.2f}. "
        )
    parts.append(
        "Dupuy et al. (2022) tune each point's recipe; a per-point learning rate (and reference models, for TPR at "
        "low FPR) would be the next run, at about one target training per model per point."
    )
    return "".join(parts)

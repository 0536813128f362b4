"""``privaudit sweep`` of the fixture recipe: inf, 16, 8, 4, 2, 1, audited, in one run.

The recipe is ``intent-tiny-dp``'s (fixtures/make_models.py: tiny BERT, 30 epochs, Poisson batch 256, max
length 32, delta 1e-5) with its canaries (10 secrets x 10 repeats, 10 controls, 200 one-run audit canaries), at every
point; ``inf`` trains it without DP at lr 3e-3, the DP points at intent-tiny-dp's lr 1e-2 (``--dp-lr``). Membership:
loss, and lira-offline and rmia with 4 reference models per point trained under that point's recipe. The sweep
directory (``.cache/bench/sweep``) caches the points and their reference models, so a second run only audits.
"""

from __future__ import annotations

import os

from benchmarks.power import CACHE, DATA, SEED, THREADS, torch_threads

# SWEEP_EPSILONS=inf,8,2 and SWEEP_REFERENCE_MODELS=0 scale the run down for a busy CPU.
EPSILONS = tuple(float(e) for e in os.environ.get("SWEEP_EPSILONS", "inf,16,8,4,2,1").split(","))
OUT = CACHE / "sweep"
REFERENCE_MODELS = int(os.environ.get("SWEEP_REFERENCE_MODELS", "4"))
LR, DP_LR = float(os.environ.get("SWEEP_LR", "3e-3")), float(os.environ.get("SWEEP_DP_LR", "1e-2"))


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
        # intent-tiny-dp's lr 1e-2 diverges without DP's clipping (measured: 6.7% train accuracy at inf), and at 3e-3
        # the DP points underfit: the no-DP point takes 3e-3, the DP points 1e-2 (--dp-lr).
        lr=LR,
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
        dp_lr=DP_LR,
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
        "what": f"the fixture recipe (intent-tiny-dp's, 1,000 members, canaries planted; lr {LR:g}, DP points "
        f"lr {DP_LR:g}) at " + ", ".join("inf" if e == float("inf") else f"{e:g}" for e in EPSILONS),
        "exceeded": [list(b) for b in result.exceeded()],
        "notes": notes(document["points"], result.exceeded(), SHORTFALL),
    }


def _tpr(attack: dict) -> dict:
    return attack["tpr_at_1%fpr"]


SHORTFALL = (
    "Where this falls short of Dupuy et al. (2022): their NLU models and data are larger and they tuned each point's "
    "recipe; here one recipe serves every point (the DP points with their own step size), one seed, and on this tiny "
    "model the attacks certify little: the empirical epsilon is a loose lower bound at every DP point (the white-box "
    "gradient-canary audit of the tightness section is the tight one)."
)


def notes(points: list[dict], exceeded: list, shortfall: str) -> str:
    """The section's notes, read from its points: the gate, the low-FPR comparison, utility, then ``shortfall``."""
    by = {p["name"]: p for p in points}
    parts = ["No DP point's bound exceeds its epsilon. " if not exceeded else f"Bounds above epsilon: {exceeded}. "]
    inf = by.get("eps-inf")
    dp_points = [p for p in points if p["epsilon"] is not None]
    if inf and inf["attacks"] and dp_points:
        strongest = max(inf["attacks"], key=lambda a: _tpr(a)["tpr"] or 0)
        t = _tpr(strongest)
        parts.append(
            f"Without DP the strongest attack at 1% FPR is {strongest['name']}, TPR {t['tpr']:.1%} "
            f"[{t['low']:.1%}, {t['high']:.1%}]. "
        )
        loss = next((a for a in inf["attacks"] if a["name"] == "loss"), None)
        if loss is not None:
            lt = _tpr(loss)
            parts.append(f"LOSS reaches {lt['tpr']:.1%} at 1% FPR (AUC {loss['auc']['value']:.3f}). ")
        ceilings = {p["name"]: max(_tpr(a)["high"] for a in p["attacks"]) for p in dp_points}
        below = [name for name, top in ceilings.items() if top < t["low"]]
        listed = ", ".join(f"{name} {top:.1%}" for name, top in ceilings.items())
        if len(below) == len(ceilings):
            parts.append(
                f"Every attack's 95% interval at every DP point ends below that interval's low end ({t['low']:.1%}; "
                f"highest upper ends: {listed}): the no-DP model leaks more at 1% FPR, with intervals that do not "
                "overlap. "
            )
        else:
            overlapping = [name for name in ceilings if name not in below]
            parts.append(
                f"At {', '.join(overlapping)} some attack's 95% interval reaches that interval's low end "
                f"({t['low']:.1%}; highest upper ends: {listed}), so there the no-DP point is not shown to leak more. "
            )
    ranked = sorted(dp_points, key=lambda q: q["epsilon"])
    if ranked:
        parts.append(
            "Utility: "
            + ", ".join(f"{p['name']} {p['utility']['accuracy']:.1%}" for p in ([inf] if inf else []) + ranked[::-1])
            + " on the non-members. "
        )
    parts.append(shortfall)
    return "".join(parts)

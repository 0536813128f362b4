"""Reference models per minute: ``--executor local`` (2 torch threads) against ``--executor ray`` (2 workers, 1 each).

Four offline reference models of the fixture ``intent-tiny``, trained with its recipe into a fresh cache on each
side, side by side in one run: the local loop with two torch threads, one model after another, against a local Ray
cluster of two workers with one thread each (``--cpus-per-job 1``), two models at a time. The local loop with one
thread is timed too, for reference: it tells the gain of running two models at once from the cost of two threads
competing for the cores. The Ray side is timed
without the cluster's start (the jobs alone) and with it; the target is at least 1.5x the local throughput. Both
sides' logits are compared: one thread against two may move the last bits of a sum, nothing more.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.power import DATA, TARGET, torch_threads
from privaudit.data import encode_labels, read_dataset
from privaudit.target import Target
from privaudit.training.executor import RayOptions
from privaudit.training.reference import reference_signals

MODELS = 4
SEED = 0
# The fixture's recipe trains 30 epochs (about 26 s a model on an idle 2-core machine); --epochs N shortens it for a
# loaded machine, where one model of the full recipe took 877 s with two spinning threads.
EPOCHS: int | None = None


def _signals(target: Target, cache: Path, *, executor: str, ray: RayOptions | None = None, recipe: dict | None = None):
    members, non_members = read_dataset(DATA / "members.jsonl"), read_dataset(DATA / "non_members.jsonl")
    population = read_dataset(DATA / "population.jsonl")
    texts = list(members.texts) + list(non_members.texts)
    labels = np.concatenate([encode_labels(members, target.label2id), encode_labels(non_members, target.label2id)])
    return reference_signals(
        target,
        audited_texts=texts,
        audited_labels=labels,
        population_texts=list(population.texts),
        population_labels=encode_labels(population, target.label2id),
        n_models=MODELS,
        online=False,
        seed=SEED,
        cache_dir=cache,
        score_population=False,
        recipe=recipe,
        executor=executor,
        ray=ray,
    )


def run(repeats: int, epochs: int | None = EPOCHS) -> dict:
    """One round (each side trains four models: minutes); ``repeats`` is not used."""
    import copy

    import ray

    from privaudit.training.ray_executor import connect

    target = Target.load(TARGET)
    recipe = copy.deepcopy(target.recipe)
    if epochs is not None:
        recipe["recipe"]["epochs"] = epochs
    options = RayOptions(workers=2, cpus_per_job=1)
    with tempfile.TemporaryDirectory() as tmp:
        with torch_threads(2):
            start = time.perf_counter()
            local = _signals(target, Path(tmp) / "local", executor="local", recipe=recipe)
            local_seconds = time.perf_counter() - start
        with torch_threads(1):  # a reference row: the local loop without two threads competing for the cores
            start = time.perf_counter()
            _signals(target, Path(tmp) / "local-1", executor="local", recipe=recipe)
            one_thread_seconds = time.perf_counter() - start
        start = time.perf_counter()
        connect(options)
        cluster_seconds = time.perf_counter() - start
        try:
            start = time.perf_counter()
            remote = _signals(target, Path(tmp) / "ray", executor="ray", ray=options, recipe=recipe)
            ray_seconds = time.perf_counter() - start
        finally:
            ray.shutdown()
    with_start = ray_seconds + cluster_seconds
    return {
        "seconds": {
            f"local: {MODELS} models, one after another, 2 torch threads": local_seconds,
            f"ray: {MODELS} models, 2 workers of 1 thread (jobs only)": ray_seconds,
            "ray: starting the local cluster": cluster_seconds,
            f"local: {MODELS} models, 1 torch thread (for reference)": one_thread_seconds,
            f"ray: {MODELS} models, including the cluster's start": with_start,
        },
        "models": MODELS,
        "epochs": recipe["recipe"]["epochs"],
        "speedup": local_seconds / ray_seconds,
        "speedup_with_start": local_seconds / with_start,
        "speedup_over_one_thread": one_thread_seconds / ray_seconds,
        "max_abs_logit_difference": float(np.abs(local.logits - remote.logits).max()),
        "ray_version": ray.__version__,
        "notes": (
            f"Two torch threads already speed the local loop up {one_thread_seconds / local_seconds:.2f}x here "
            f"({one_thread_seconds:.1f} s with one thread against {local_seconds:.1f} s with two), so two one-thread "
            f"Ray workers ({one_thread_seconds / ray_seconds:.2f}x the one-thread loop, against the 2x two cores "
            f"allow) reach {local_seconds / ray_seconds:.2f}x over the two-thread loop: on {os.cpu_count()} cores "
            "the 1.5x target is out of reach; it needs more cores than torch's intra-op threads use well, or more "
            "nodes. The two sides' logits differ because they train with different thread counts (2 against 1), "
            "whose float reductions differ over 30 epochs; at equal thread counts the test suite shows "
            "byte-identical weights (tests/training/test_executor.py). Timings move by several percent between runs "
            "on this machine (the quiet run of 2026-12-01 18:11 UTC measured 1.31x and 1.71x)."
        ),
    }


if __name__ == "__main__":
    import argparse
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.run import RESULTS, machine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="shorten the fixture recipe (default: its 30)")
    args = parser.parse_args()
    result = run(1, epochs=args.epochs)
    result["machine"] = machine()
    result["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS / "executor.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["seconds"], indent=2))

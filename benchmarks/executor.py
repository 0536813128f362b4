"""Reference models per minute: ``--executor local`` as it was, as it is, and ``--executor ray``.

Four offline reference models of the fixture ``intent-tiny``, trained with its recipe into a fresh cache on each
side, side by side in one run:

- the local executor as it was before issue 21: one model after another in this process, with two torch threads
  (``--workers 1 --cpus-per-job 2`` gives that loop back);
- the local executor as it is by default: two worker processes of one thread each, two models at a time, the
  threads of a Ray job, so that its models are Ray's, byte for byte;
- the one-thread loop, for reference: it tells the gain of running two models at once from the cost of two threads
  competing for the cores;
- a local Ray cluster of two workers with one thread each (default ``--cpus-per-job 1``), timed without the
  cluster's start (the jobs alone) and with it.

The logits of the local default and of Ray are compared: they must be equal.
"""

from __future__ import annotations

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
    before = RayOptions(workers=1, cpus_per_job=2)  # the local loop before issue 21
    one_thread = RayOptions(workers=1, cpus_per_job=1)
    with tempfile.TemporaryDirectory() as tmp:
        with torch_threads(2):
            start = time.perf_counter()
            old = _signals(target, Path(tmp) / "local-before", executor="local", ray=before, recipe=recipe)
            old_seconds = time.perf_counter() - start
            start = time.perf_counter()
            local = _signals(target, Path(tmp) / "local", executor="local", recipe=recipe)
            local_seconds = time.perf_counter() - start
            start = time.perf_counter()
            _signals(target, Path(tmp) / "local-1", executor="local", ray=one_thread, recipe=recipe)
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
    difference = float(np.abs(local.logits - remote.logits).max())
    return {
        "seconds": {
            f"local before: {MODELS} models, one after another, 2 torch threads": old_seconds,
            f"local now (default): {MODELS} models, 2 worker processes of 1 thread": local_seconds,
            f"local: {MODELS} models, one after another, 1 torch thread (for reference)": one_thread_seconds,
            f"ray: {MODELS} models, 2 workers of 1 thread (jobs only)": ray_seconds,
            "ray: starting the local cluster": cluster_seconds,
            f"ray: {MODELS} models, including the cluster's start": with_start,
        },
        "models": MODELS,
        "epochs": recipe["recipe"]["epochs"],
        "local_speedup": old_seconds / local_seconds,
        "speedup": local_seconds / ray_seconds,
        "speedup_with_start": local_seconds / with_start,
        "speedup_over_one_thread": one_thread_seconds / ray_seconds,
        "max_abs_logit_difference": difference,
        "max_abs_logit_difference_before": float(np.abs(old.logits - remote.logits).max()),
        "ray_version": ray.__version__,
        "notes": (
            f"The local default now runs {old_seconds / local_seconds:.2f}x the speed of the loop it replaced "
            f"({local_seconds:.1f} s against {old_seconds:.1f} s), each job with one thread in a worker process of "
            f"its own, two at a time; its reference logits are Ray's {'exactly' if difference == 0 else 'NOT exactly'}"
            f" (largest difference {difference:.2g}), where the old loop's two threads moved them by "
            f"{float(np.abs(old.logits - remote.logits).max()):.2g}. Ray runs the same jobs at "
            f"{local_seconds / ray_seconds:.2f}x the local default's speed. Timings move by several percent between "
            "runs on this machine."
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

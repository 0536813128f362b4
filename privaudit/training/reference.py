"""Reference (shadow) models: trained the target's way on data like the target's, to calibrate strong attacks.

Each reference model trains on as many examples as the target did, drawn at random from a pool: the population alone
(offline: every audited example is OUT of every reference model), or the population together with the audited examples
(online: each audited example is IN some models and OUT of the others, as LiRA needs; Carlini et al. 2022, sec. IV).
The models are cached on disk under a key of the recipe, the data and the seed, each written atomically, so an
interrupted run resumes with the models it already has. Each model is one job (``privaudit.training.executor``), run
in worker processes here (``privaudit.training.local_executor``) or as Ray tasks across a cluster, with the same
torch threads per job on both, so that both give the same models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit.data import fingerprint
from privaudit.device import CPU, Compute
from privaudit.errors import PrivauditError
from privaudit.target import Target
from privaudit.training.executor import (
    EXECUTORS,
    Done,
    JobData,
    JobResult,
    RayOptions,
    ReferenceJob,
    Step,
    subset,
)
from privaudit.training.local_executor import run_local
from privaudit.training.model import Architecture
from privaudit.training.train import DPConfig, TrainConfig
from privaudit.training.word_models import WordModel

DEFAULT_CACHE = Path(".cache") / "privaudit" / "reference"


@dataclass(frozen=True)
class ReferenceSignals:
    """Reference models' logits on the audited examples and on the population."""

    logits: np.ndarray  # (K, n, C)
    is_in: np.ndarray  # (K, n) bool
    population_logits: np.ndarray | None  # (K, m, C)
    population_is_in: np.ndarray | None = None  # (K, m) bool: the population examples each model trained on


def run_jobs(
    jobs: Sequence[ReferenceJob],
    data: JobData,
    *,
    executor: str = "local",
    compute: Compute = CPU,
    ray: RayOptions | None = None,
    on_done: Done,
    on_step: Step | None = None,
) -> None:
    """Run every job on ``executor``, calling ``on_done`` as each finishes (in any order).

    Raises:
        PrivauditError: an unknown executor, a job that failed, or (Ray) a cluster that cannot run the jobs.
    """
    if executor not in EXECUTORS:
        raise PrivauditError(f"--executor '{executor}' is unknown; use one of {', '.join(EXECUTORS)}")
    if not jobs:
        return
    ray = ray or RayOptions()
    if executor == "local":  # worker processes here, with a Ray job's torch threads; Ray is never imported
        run_local(
            jobs,
            data,
            compute=compute,
            on_done=on_done,
            on_step=on_step,
            workers=ray.workers,
            cpus_per_job=ray.cpus_per_job,
        )
        return
    from privaudit.training.ray_executor import run_ray

    run_ray(jobs, data, options=ray, precision=compute.precision, on_done=on_done)


def train_config_from_recipe(recipe: dict | None, source: str) -> tuple[TrainConfig, DPConfig | None, int]:
    """The target's training recipe, DP parameters and training-set size, from its ``privaudit.json``.

    Raises:
        PrivauditError: no recipe, or one without the fields needed to retrain.
    """
    if not recipe or "recipe" not in recipe:
        raise PrivauditError(
            f"{source}: no training recipe (privaudit.json) to train reference models from; "
            "pass --train-config FILE, or train the model with 'privaudit train'"
        )
    try:
        raw = dict(recipe["recipe"])
        arch = raw.pop("architecture", None)
        word_model = raw.pop("word_model", None)
        config = TrainConfig(
            **raw,
            architecture=Architecture(**arch) if arch else None,
            word_model=WordModel.from_recipe(word_model) if word_model else None,
        )
        n_train = int(recipe["data"]["n_examples"])
    except (KeyError, TypeError) as err:
        raise PrivauditError(f"{source}: the training recipe lacks {err}; retrain with 'privaudit train'") from err
    dp = recipe.get("dp")
    dp_config = None
    if dp:
        dp_config = DPConfig(
            delta=float(dp["delta"]),
            max_grad_norm=float(dp["max_grad_norm"]),
            noise_multiplier=float(dp["noise_multiplier"]),
            accountant=dp.get("accountant", "rdp"),
            grad_sample_mode=dp.get("grad_sample_mode", "ghost"),
        )
    return config, dp_config, n_train


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reference_signals(
    target: Target,
    *,
    audited_texts: Sequence[str],
    audited_labels: np.ndarray,
    population_texts: Sequence[str],
    population_labels: np.ndarray,
    n_models: int,
    online: bool,
    seed: int,
    recipe: dict | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    score_population: bool = True,
    on_model: Callable[[int, int, str], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    compute: Compute = CPU,
    executor: str = "local",
    ray: RayOptions | None = None,
    audited_groups: Sequence[str] | None = None,
    population_groups: Sequence[str] | None = None,
) -> ReferenceSignals:
    """Train (or load from cache) ``n_models`` reference models and score the audited and population examples.

    Args:
        target: the audited model; its recipe and tokenizer are reused.
        audited_texts: members and non-members, in audit order.
        audited_labels: their label ids.
        population_texts: examples from the training distribution, not in the target's training set.
        population_labels: their label ids.
        n_models: how many reference models.
        online: include audited examples in the pool, so each is IN some models.
        seed: the run's seed; model ``i`` is drawn and trained from it.
        recipe: a training recipe overriding the target's (``--train-config``).
        cache_dir: where trained models are kept between runs.
        score_population: also score the population with each model (RMIA's z-samples need it; LiRA does not).
        on_model: called with (models done, total, "trained" | "cached") as each model becomes available.
        on_step: training progress, (model index, steps done, total steps); the local executor only.
        compute: the device, and the precision of scoring and of non-DP training.
        executor: ``"local"`` (worker processes here) or ``"ray"`` (each model a Ray task); either trains each
            model with ``ray.cpus_per_job`` torch threads, so both give the same models.
        ray: the executors' options: ``workers`` and ``cpus_per_job`` apply to both, the rest to Ray.
        audited_groups: each audited example's owner (``--group-by``); with ``population_groups``, models hold
            whole users in or out, never some of a user's records.
        population_groups: each population example's owner.
    """
    if n_models < 1:
        raise PrivauditError("--reference-models must be at least 1")
    config, dp, n_train = train_config_from_recipe(recipe or target.recipe, str(target.path / "privaudit.json"))
    n_audited, n_pop = len(audited_texts), len(population_texts)
    pool_texts = list(population_texts) + (list(audited_texts) if online else [])
    pool_labels = np.concatenate([population_labels, audited_labels]) if online else np.asarray(population_labels)
    if len(pool_texts) < 2:
        raise PrivauditError("reference models need a --population file with examples from the training distribution")
    size = min(n_train, len(pool_texts) // 2 if not online else len(pool_texts))
    label_names = [target.id2label[i] for i in range(target.n_labels)]
    pool_groups = None
    key_parts: tuple = ()
    if population_groups is not None:
        if online and audited_groups is None:
            raise PrivauditError("online reference models by user need the audited examples' owners too")
        owners = list(population_groups) + (list(audited_groups) if online else [])
        position = {owner: i for i, owner in enumerate(dict.fromkeys(owners))}
        pool_groups = tuple(position[owner] for owner in owners)
        key_parts = (fingerprint(owners, [0] * len(owners)),)  # another split is another set of models
    data_key = _key(
        fingerprint(pool_texts, pool_labels.tolist()),
        len(population_texts),
        online,
        seed,
        size,
        target.fingerprint(),
        *key_parts,
    )
    # The key of today's fp32 models is unchanged; a model trained in reduced precision is another model.
    train_precision = "fp32" if dp is not None else compute.precision
    recipe_key = _key(config, dp) if train_precision == "fp32" else _key(config, dp, train_precision)
    logits = np.empty((n_models, n_audited, target.n_labels))
    is_in = np.zeros((n_models, n_audited), dtype=bool)
    pop_logits = np.empty((n_models, n_pop, target.n_labels)) if score_population else None
    pop_in = np.zeros((n_models, n_pop), dtype=bool)
    jobs = []
    for i in range(n_models):
        chosen, _ = subset(seed, i, len(pool_texts), size, pool_groups)
        in_pool = np.zeros(len(pool_texts), dtype=bool)
        in_pool[chosen] = True
        pop_in[i] = in_pool[:n_pop]
        if online:
            is_in[i] = in_pool[n_pop:]
        model_dir = Path(cache_dir) / recipe_key / data_key / f"model-{i}"
        jobs.append(ReferenceJob(index=i, seed=seed, size=size, config=config, dp=dp, model_dir=model_dir))
    data = JobData(
        pool_texts=tuple(pool_texts),
        pool_labels=pool_labels,
        label_names=tuple(label_names),
        tokenizer=target.tokenizer,
        scored_texts=tuple(audited_texts) + (tuple(population_texts) if score_population else ()),
        pool_groups=pool_groups,
    )
    done = [0]

    def finished(result: JobResult) -> None:
        logits[result.index] = result.logits[:n_audited]
        if pop_logits is not None:
            pop_logits[result.index] = result.logits[n_audited:]
        done[0] += 1
        if on_model is not None:
            on_model(done[0], n_models, result.status)

    run_jobs(jobs, data, executor=executor, compute=compute, ray=ray, on_done=finished, on_step=on_step)
    return ReferenceSignals(
        logits=logits,
        is_in=is_in,
        population_logits=pop_logits,
        population_is_in=pop_in if score_population else None,
    )


def load_reference_dirs(
    target: Target,
    directories: Sequence[Path],
    *,
    texts: Sequence[str],
    allow_pickle: bool = False,
    compute: Compute = CPU,
) -> np.ndarray:
    """Logits of user-supplied reference models (``--reference-dir``) on ``texts``, shape ``(K, len(texts), C)``.

    Such models are taken as trained without the audited examples (offline reference models).

    Raises:
        PrivauditError: a directory that does not load, or whose labels differ from the target's.
    """
    logits = []
    for directory in directories:
        reference = Target.load(directory, allow_pickle=allow_pickle, compute=compute)
        if reference.label2id != target.label2id:
            raise PrivauditError(
                f"{directory}: its labels differ from the audited model's; reference models must share the label set"
            )
        logits.append(reference.logits(list(texts)))
    return np.stack(logits)

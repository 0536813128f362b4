"""Reference-model jobs, and the executors that run them: ``local`` (worker processes here) and ``ray``.

A job is (recipe, data subset, seed) and its cache entry. Jobs are idempotent: a job whose entry is complete
returns it; otherwise it trains into a temporary directory beside the entry and renames it into place, atomically. So
retries, duplicate submissions and a killed driver cost nothing but the unfinished jobs, and a rerun trains only what
is missing. Each job derives its own data subset from the run's seed and its index (:func:`subset`), so any host
computes the same one, and returns its logits as numpy arrays.

While it trains, a job's temporary directory holds ``.owner`` (host and pid): a later try of the same job on that
host removes the directory of an owner that died (a SIGKILLed worker leaves it behind), and so does the driver at the
end of a run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from privaudit import integrity
from privaudit.device import CPU, Compute, threads
from privaudit.errors import PrivauditError
from privaudit.integrity import move_aside
from privaudit.target import RECIPE_FILE, Target, check_model_dir
from privaudit.training.save import recipe_dict, write_model
from privaudit.training.train import DPConfig, TrainConfig, train_classifier

EXECUTORS = ("local", "ray")
OWNER_FILE = ".owner"


@dataclass(frozen=True)
class RayOptions:
    """How ``--executor ray`` runs the jobs.

    Attributes:
        address: a running cluster (``--ray-address``; else ``RAY_ADDRESS``); ``None``: a local cluster for the run.
        workers: jobs at once on that local cluster (default: one per CPU, over ``cpus_per_job``).
        cpus_per_job: CPUs Ray reserves for each job, and the job's torch threads.
        gpus_per_job: GPUs each job reserves (fractions share a GPU); above 0, jobs train on CUDA.
        max_retries: how often Ray reruns a job whose worker died.
        object_store_mb: the local cluster's object store (Ray reserves 7.4 GB of /dev/shm without a limit).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_job: int = 1
    gpus_per_job: float = 0.0
    max_retries: int = 3
    object_store_mb: int = 200

    def __post_init__(self) -> None:
        if self.cpus_per_job < 1:
            raise PrivauditError("--cpus-per-job must be at least 1")
        if self.gpus_per_job < 0:
            raise PrivauditError("--gpus-per-job must be 0 or more (fractions share a GPU)")
        if self.max_retries < 0:
            raise PrivauditError("--max-retries must be 0 or more")
        if self.workers is not None and self.workers < 1:
            raise PrivauditError("--workers must be at least 1")


@dataclass(frozen=True)
class JobData:
    """What every job of a run shares: the pool it draws from, the tokenizer, and the texts it scores."""

    pool_texts: tuple[str, ...]
    pool_labels: np.ndarray
    label_names: tuple[str, ...]
    tokenizer: object
    scored_texts: tuple[str, ...]
    pool_groups: tuple[int, ...] | None = None  # each pool record's owner (--group-by): models draw whole users


@dataclass(frozen=True)
class ReferenceJob:
    """One reference model: its recipe, its index under the run's seed, and its cache entry."""

    index: int
    seed: int
    size: int
    config: TrainConfig
    dp: DPConfig | None
    model_dir: Path


@dataclass(frozen=True)
class JobResult:
    """A finished job: ``status`` is ``"trained"`` or ``"cached"``; ``logits`` are on ``JobData.scored_texts``."""

    index: int
    status: str
    logits: np.ndarray


def subset(
    seed: int, index: int, pool_size: int, size: int, groups: Sequence[int] | None = None
) -> tuple[np.ndarray, int]:
    """Model ``index``'s training examples (sorted pool indices) and training seed, from the run's seed alone.

    With ``groups`` (each pool record's owner, ``--group-by``) whole users are drawn, in a random order, while their
    records fit in ``size`` (at least one user): a model holds each user entirely in or entirely out.
    """
    rng = np.random.default_rng([seed, index, 7])
    if groups is None:
        chosen = np.sort(rng.choice(pool_size, size=size, replace=False))
        return chosen, int(rng.integers(2**31))
    owner = np.asarray(groups, dtype=np.int64)
    counts = np.bincount(owner)
    users = rng.permutation(counts.size)
    users = users[counts[users] > 0]
    taken = np.cumsum(counts[users]) <= size
    taken[0] = True
    chosen = np.flatnonzero(np.isin(owner, users[taken]))
    return chosen, int(rng.integers(2**31))


def complete(model_dir: Path) -> bool:
    """Whether a cache entry is complete (it appears whole, by a rename, or not at all) and intact.

    An entry that fails its check (:func:`entry_problem`) is moved aside with one warning line, and the job rebuilds it.
    """
    model_dir = Path(model_dir)
    if not (model_dir / RECIPE_FILE).is_file():
        return False
    problem = entry_problem(model_dir)
    if problem is None:
        return True
    move_aside(model_dir, problem, what="cached reference model", then="training it again")
    return False


def entry_problem(model_dir: Path) -> str | None:
    """What is wrong with a reference-model cache entry: files against its content record, then the model files'
    own checks (safetensors headers, labels, ``max_length``); ``None`` when it is intact."""
    problem = integrity.entry_problem(model_dir)
    if problem is not None:
        return problem
    try:
        check_model_dir(model_dir)
    except PrivauditError as err:
        return str(err).removeprefix(f"{model_dir}: ")
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(directory: Path, pattern: str = ".model-*.*") -> list[Path]:
    """Remove the temporary directories under ``directory`` whose owner was a process of this host that died."""
    removed = []
    host = socket.gethostname()
    for tmp in Path(directory).glob(pattern):
        try:
            owner = json.loads((tmp / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not a job's directory, or one whose owner is still writing it
        if owner.get("host") == host and not _alive(int(owner.get("pid", 0))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _publish(tmp: Path, model_dir: Path) -> None:
    """Rename ``tmp`` into place; if a duplicate of the job got there first, keep its (identical) entry."""
    try:
        tmp.rename(model_dir)
    except OSError:
        if complete(model_dir):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(model_dir, ignore_errors=True)  # an entry left incomplete by an older privaudit
        tmp.rename(model_dir)


def run_job(
    job: ReferenceJob,
    data: JobData,
    *,
    compute: Compute = CPU,
    torch_threads: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> JobResult:
    """Train (or find in the cache) one reference model, then score ``data.scored_texts`` with it.

    Args:
        job: the model to train.
        data: the run's shared pool, tokenizer and texts.
        compute: the device; the precision applies to scoring, and to training unless the recipe is DP-SGD.
        torch_threads: torch's intra-op threads for the job (``None``: leave them).
        on_step: training progress, (steps done, total steps).
    """
    model_dir = Path(job.model_dir)
    status = "cached"
    with threads(torch_threads):
        if not complete(model_dir):
            status = "trained"
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(model_dir.parent, f".{model_dir.name}.*")
            tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent))
            owner = {"host": socket.gethostname(), "pid": os.getpid()}
            (tmp / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
            try:
                chosen, train_seed = subset(job.seed, job.index, len(data.pool_texts), job.size, data.pool_groups)
                train_compute = compute if job.dp is None else replace(compute, precision="fp32")
                trained = train_classifier(
                    texts=[data.pool_texts[j] for j in chosen],
                    labels=data.pool_labels[chosen],
                    label_names=list(data.label_names),
                    config=replace(job.config, seed=train_seed),
                    dp=job.dp,
                    tokenizer=data.tokenizer,
                    on_step=on_step,
                    compute=train_compute,
                )
                recipe = recipe_dict(
                    trained, data={"n_examples": job.size, "reference_index": job.index}, canaries=None
                )
                (tmp / OWNER_FILE).unlink()
                write_model(trained, tmp, recipe)
                integrity.write_entry_record(tmp)  # checked when the entry is read (complete)
                _publish(tmp, model_dir)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        reference = Target.load(model_dir, compute=compute)
        logits = reference.logits(list(data.scored_texts))
    return JobResult(index=job.index, status=status, logits=logits)


Done = Callable[[JobResult], None]
Step = Callable[[int, int, int], None]

"""``--executor local``: the reference-model jobs on this machine, each with the torch threads of a Ray job.

The number of torch threads changes a model's last bits (a sum split over two threads adds in another order, and
training carries the difference on), so the executor must not choose it: a job here trains with ``--cpus-per-job``
threads (default 1), as a Ray job does, and the same seed gives byte-identical reference models on either executor.
To still use every core, ``--workers`` jobs run at once (default: the CPUs over ``--cpus-per-job``), each in a worker
process of its own, started with ``spawn`` (a forked child of a process that has run torch's thread pools can hang).
One job at a time, a job on a GPU, and a job whose model is already cached (it only scores) run here in this
process, with the same threads.

Workers ignore Ctrl-C: the driver stops them, and the temporary directories of the jobs they leave unfinished are
removed (their owner is dead), so a rerun trains only the missing models.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from privaudit.device import CPU, Compute
from privaudit.errors import PrivauditError
from privaudit.training.executor import (
    Done,
    JobData,
    JobResult,
    ReferenceJob,
    Step,
    complete,
    remove_stale,
    run_job,
)

_POLL_S = 0.1

# The worker process's share of the run, set once by _start_worker (the data is sent once per worker, not per job).
_worker: dict = {}


def local_workers(n_jobs: int, *, workers: int | None, cpus_per_job: int) -> int:
    """Jobs at once: ``workers``, by default the CPUs over ``cpus_per_job``; never more than the jobs."""
    if cpus_per_job < 1:
        raise PrivauditError("--cpus-per-job must be at least 1")
    if workers is not None and workers < 1:
        raise PrivauditError("--workers must be at least 1")
    default = max(1, (os.cpu_count() or 1) // cpus_per_job)
    return max(1, min(n_jobs, workers or default))


def run_local(
    jobs: Sequence[ReferenceJob],
    data: JobData,
    *,
    compute: Compute = CPU,
    on_done: Done,
    on_step: Step | None = None,
    workers: int | None = None,
    cpus_per_job: int = 1,
) -> None:
    """Run the jobs here, each with ``cpus_per_job`` torch threads, ``workers`` at once; ``on_done`` as each finishes.

    Args:
        jobs: the reference models to train (or find in the cache).
        data: the run's shared pool, tokenizer and texts.
        compute: the device and precision.
        on_done: called with each finished job's result, in the order they finish.
        on_step: training progress, (model index, steps done, total steps).
        workers: jobs at once (default: the CPUs over ``cpus_per_job``); on a GPU, one.
        cpus_per_job: each job's torch threads, as a Ray job's.

    Raises:
        PrivauditError: a job failed (after the others finished), or a worker process died.
    """
    cached = [complete(job.model_dir) for job in jobs]
    to_train = [job for job, done in zip(jobs, cached) if not done]
    n = local_workers(len(to_train), workers=workers, cpus_per_job=cpus_per_job)
    here = jobs if n == 1 or compute.device.type != "cpu" else [job for job, done in zip(jobs, cached) if done]
    for job in here:
        step = None if on_step is None else (lambda done, total, i=job.index: on_step(i, done, total))
        on_done(run_job(job, data, compute=compute, torch_threads=cpus_per_job, on_step=step))
    if len(here) == len(jobs):
        return
    try:
        _run_pool(to_train, data, compute=compute, n=n, threads=cpus_per_job, on_done=on_done, on_step=on_step)
    finally:
        for directory in {Path(job.model_dir).parent for job in jobs}:  # what a killed worker left behind
            if directory.is_dir():
                remove_stale(directory)


def _run_pool(
    jobs: Sequence[ReferenceJob],
    data: JobData,
    *,
    compute: Compute,
    n: int,
    threads: int,
    on_done: Done,
    on_step: Step | None,
) -> None:
    context = multiprocessing.get_context("spawn")
    steps = context.Queue() if on_step is not None else None
    pool = ProcessPoolExecutor(
        max_workers=n, mp_context=context, initializer=_start_worker, initargs=(data, compute, threads, steps)
    )
    with _main_not_rerun():  # the workers start as the jobs are submitted
        futures: dict[Future, ReferenceJob] = {pool.submit(_work, job): job for job in jobs}
    pending = set(futures)
    failure: PrivauditError | None = None
    try:
        while pending:
            done, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            _drain(steps, on_step)
            for future in done:
                job = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    failure = failure or PrivauditError(
                        f"reference model {job.index}: its worker process died (killed, or out of memory); the "
                        "models that finished are cached, so a rerun trains only the missing ones"
                    )
                    continue
                except PrivauditError as err:
                    failure = failure or err
                    continue
                on_done(result)
        _drain(steps, on_step)
        if failure is not None:
            raise failure
    except BaseException:
        # Ctrl-C or a job's own error: stop the workers now, not after the jobs still queued.
        pool.shutdown(wait=False, cancel_futures=True)
        # concurrent.futures has no public way to stop a running task; its worker processes are terminated.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start spawned workers without importing ``__main__`` in them.

    A spawned child imports the parent's main script (to find what it defines) unless the script is a ``-m`` module:
    a user's script that calls ``privaudit.audit_membership`` without an ``if __name__ == "__main__":`` guard would
    run its audit again in every worker. The workers need nothing from it (their functions and data are
    privaudit's), so while they start the main module shows no file or spec to import.
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    try:
        if "__file__" in saved:
            del main.__file__
        if "__spec__" in saved:
            main.__spec__ = None  # multiprocessing reads main.__spec__ itself, so it must stay
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _drain(steps, on_step: Step | None) -> None:
    if steps is None or on_step is None:
        return
    while True:
        try:
            index, done, total = steps.get_nowait()
        except queue.Empty:
            return
        on_step(index, done, total)


def _start_worker(data: JobData, compute: Compute, threads: int, steps) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the workers
    _worker.update(data=data, compute=compute, threads=threads, steps=steps)


def _work(job: ReferenceJob) -> JobResult:
    steps = _worker["steps"]
    on_step = None if steps is None else (lambda done, total: steps.put((job.index, done, total)))
    return run_job(job, _worker["data"], compute=_worker["compute"], torch_threads=_worker["threads"], on_step=on_step)


__all__ = ["run_local", "local_workers"]

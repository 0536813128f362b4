"""``--executor ray``: each reference model as one Ray core task (``ray.remote``), not Ray Train.

Imported only when chosen (``pip install 'privaudit[ray]'``). Connects to ``--ray-address`` (else ``RAY_ADDRESS``),
or starts a local cluster for the run: ``--workers N`` jobs at once, no dashboard, a small object store. Before any
job is submitted it checks that the cluster can run them: a GPU job needs GPUs in the cluster (Ray would leave it
pending for ever), some node must have ``--cpus-per-job`` CPUs, and every node must see the cache directory (a
probe task on each node reads a token the driver wrote there). Jobs retry ``--max-retries`` times when their worker
dies; the progress advances as jobs finish (``ray.wait``), whatever their order.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from privaudit.errors import PrivauditError
from privaudit.training.executor import Done, JobData, JobResult, RayOptions, ReferenceJob, remove_stale, run_job

CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 120.0
T = TypeVar("T")
R = TypeVar("R")

PROBE_FILE = ".privaudit-probe"
REFERENCE_CACHE = "the reference-model cache {path} (--cache-dir)"


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise PrivauditError(
            "--executor ray needs Ray: pip install 'privaudit[ray]' (or use --executor local)"
        ) from err
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, with one line, on a ``host:port`` (or ``ray://host:port``) where nothing listens."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if parsed.hostname is None or parsed.port is None:
        raise PrivauditError(f"--ray-address '{address}' is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise PrivauditError(
            f"--ray-address {address}: no Ray cluster answers there ({err.strerror or err}); start one with "
            "'ray start --head', or leave out --ray-address (and RAY_ADDRESS) for a local cluster"
        ) from None


def _cluster_errors_to_stderr(ray) -> None:
    """Send the cluster's error messages ("A worker died ...") to stderr: Ray's driver prints them to stdout, where
    a ``--format json`` report goes. Ray 2.60's listener thread prints through ``ray._private.worker``'s
    ``print_to_stdstream``; where that is missing (another Ray), nothing changes."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(module, "print_to_stdstream", None)
    if original is None or getattr(original, "privaudit_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.privaudit_stderr = True
    module.print_to_stdstream = to_stderr


def connect(options: RayOptions) -> bool:
    """Connect to the cluster, or start a local one; ``True`` when this call started it (and so shuts it down).

    A process already connected (``ray.init`` called before) keeps its connection.

    Raises:
        PrivauditError: an unreachable address, or a cluster that refuses the connection.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PrivauditError(
                f"--ray-address {address}: cannot connect ({first}); a cluster started by 'ray start' (Ray >= 2.59) "
                "needs RAY_AUTH_MODE=token and its token in this environment"
            ) from None
        return True
    cpus = options.workers * options.cpus_per_job if options.workers else os.cpu_count() or 1
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=options.object_store_mb * 1024 * 1024,
        **quiet,
    )
    return True


def shutdown() -> None:
    """Disconnect from the cluster (and stop it, if :func:`connect` started it here)."""
    _import_ray().shutdown()


def _probe(path: str, token: str) -> tuple[str, bool]:
    try:
        seen = Path(path).read_text(encoding="utf-8").strip() == token
    except OSError:
        seen = False
    return socket.gethostname(), seen


def check_cluster(options: RayOptions, cache_dir: Path, *, what: str = REFERENCE_CACHE) -> None:
    """Refuse, before submitting, a cluster that cannot run the jobs or does not share the cache directory.

    ``what`` names that directory in the errors, with ``{path}`` for its path.

    Raises:
        PrivauditError: GPU jobs on a cluster without (enough) GPUs, no node with ``cpus_per_job`` CPUs, or a node
            that cannot read the cache directory.
    """
    ray = _import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if options.gpus_per_job > 0 and gpus < options.gpus_per_job:
        raise PrivauditError(
            f"--gpus-per-job {options.gpus_per_job:g}: the Ray cluster has {gpus:g} GPUs ({cpus:g} CPUs); "
            "use --gpus-per-job 0, or add GPU nodes"
        )
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= options.cpus_per_job]
    if options.gpus_per_job > 0:
        nodes = [n for n in nodes if n["Resources"].get("GPU", 0) >= options.gpus_per_job]
    if not nodes:
        raise PrivauditError(
            f"--cpus-per-job {options.cpus_per_job}: no node of the Ray cluster has that many CPUs "
            f"({'and GPUs ' if options.gpus_per_job else ''}free of other reservations); lower it"
        )
    cache_dir = Path(cache_dir).resolve()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PrivauditError(f"{what.format(path=cache_dir)}: cannot create it ({err.strerror or err})") from None
    token = secrets.token_hex(16)
    probe = cache_dir / f"{PROBE_FILE}-{token[:8]}"
    probe.write_text(token, encoding="utf-8")
    task = ray.remote(num_cpus=0, max_retries=1)(_probe)
    try:
        refs = [
            task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
                str(probe), token
            )
            for node in nodes
        ]
        try:
            answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise PrivauditError(
                f"the Ray cluster did not run a probe task within {PROBE_TIMEOUT_S:.0f} s; check its nodes"
            ) from None
    finally:
        probe.unlink(missing_ok=True)
    blind = [host for host, seen in answers if not seen]
    if blind:
        raise PrivauditError(
            f"{what.format(path=cache_dir)} is not shared with every Ray node ({', '.join(sorted(set(blind)))} "
            "cannot read it); put it on storage that every node mounts at the same path (NFS, a shared volume)"
        )


def _job(job: ReferenceJob, data: JobData, device: str, precision: str, threads: int) -> JobResult:
    from privaudit.device import Compute

    return run_job(job, data, compute=Compute.from_flags(device, precision), torch_threads=threads)


def _failure(ray, name: str, err: BaseException, options: RayOptions) -> PrivauditError:
    """One line for a task (``name``: "reference model 3", "sweep point eps-8") that failed on the cluster."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, PrivauditError):
            return PrivauditError(str(cause.args[0]) if cause.args else str(cause))
        return PrivauditError(f"{name} failed on the Ray cluster: {type(cause or err).__name__}")
    died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError)
    if isinstance(err, died):
        return PrivauditError(
            f"{name}: its Ray worker died ({type(err).__name__}: killed, out of memory or its node lost) and "
            f"--max-retries {options.max_retries} allowed no further try; the models that finished are cached, so a "
            "rerun trains only the missing ones"
        )
    return PrivauditError(f"{name} failed on the Ray cluster ({type(err).__name__})")


def run_tasks(
    function: Callable[..., R],
    items: Sequence[T],
    *,
    args: Sequence[object] = (),
    options: RayOptions,
    shared_dir: Path,
    what: str,
    name: Callable[[T], str],
    on_done: Callable[[T, R], None],
) -> None:
    """Run ``function(item, *args)`` as one Ray task per item; ``on_done(item, result)`` as each finishes.

    ``args`` are put in the object store once and shared by every task. ``shared_dir`` is where the tasks write
    (``what`` names it in the errors): every node must see it. A failed task fails the run once the others finish.

    Raises:
        PrivauditError: the cluster cannot run the tasks, or a task failed (its worker died past the retries).
    """
    ray = _import_ray()
    _cluster_errors_to_stderr(ray)
    started = connect(options)
    pending: list = []
    try:
        check_cluster(options, shared_dir, what=what)
        task = ray.remote(function)
        shared = [ray.put(arg) for arg in args]
        refs = {
            task.options(
                num_cpus=options.cpus_per_job,
                num_gpus=options.gpus_per_job,
                max_retries=options.max_retries,
                retry_exceptions=False,
            ).remote(item, *shared): item
            for item in items
        }
        pending = list(refs)
        failure: PrivauditError | None = None
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:
                    failure = failure or _failure(ray, name(refs[ref]), err, options)
                    continue
                on_done(refs[ref], result)
        if failure is not None:
            raise failure
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def run_ray(jobs: Sequence[ReferenceJob], data: JobData, *, options: RayOptions, precision: str, on_done: Done) -> None:
    """Run the reference-model jobs as Ray tasks; ``on_done`` as each finishes.

    Raises:
        PrivauditError: the cluster cannot run the jobs, or a job failed (its worker died past the retries).
    """
    from privaudit.device import check_precision

    device = "cuda" if options.gpus_per_job > 0 else "cpu"
    check_precision(precision, device)
    # Absolute paths: a worker elsewhere does not run in the driver's directory.
    jobs = [replace(job, model_dir=Path(job.model_dir).resolve()) for job in jobs]
    cache_dirs = {Path(job.model_dir).parent for job in jobs}
    try:
        run_tasks(
            _job,
            jobs,
            args=(data, device, precision, options.cpus_per_job),
            options=options,
            shared_dir=Path(jobs[0].model_dir).parent,
            what=REFERENCE_CACHE,
            name=lambda job: f"reference model {job.index}",
            on_done=lambda _job, result: on_done(result),
        )
    finally:
        for directory in cache_dirs:  # the temporary directories of workers of this host that died
            remove_stale(directory)

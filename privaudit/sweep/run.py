"""``privaudit sweep``: one recipe trained at several target epsilons, each point audited, theory beside practice.

After Dupuy et al. (ICASSP 2022), who trained NLU models with DP-SGD at several privacy levels and set the
theoretical epsilon against what membership inference measured, to choose the privacy/utility trade-off.

Each point is one training job (:class:`~privaudit.training.job.TrainJob`: the recipe, with DP at the point's
target epsilon, or without DP at ``inf``), written under ``OUT/points/`` and run through :func:`run_points`, the one
function an executor (a process pool, Ray) would replace; a point whose model directory is complete is not trained
again, so an interrupted sweep resumes. Every point is then audited (:func:`privaudit.sweep.audit.audit_point`):
membership attacks with reference models trained under the point's own recipe, DP included; canary exposure and
ModIvA, and the one-run audit, when the recipe plants canaries; the white-box f-DP audit of the gradient canaries
(``--gradient-canaries M``, DP points only); utility on the non-members.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from privaudit import __version__, integrity
from privaudit.device import threads
from privaudit.errors import PrivauditError
from privaudit.integrity import move_aside
from privaudit.target import RECIPE_FILE, check_model_dir
from privaudit.training.executor import EXECUTORS, RayOptions
from privaudit.training.job import TrainJob, run_train

SCHEMA = "privaudit.sweep/1"
RESULT_FILE = "sweep.json"
REPORT_FILE = "sweep.html"

Progress = Callable[[str, int, int | None], None]


def parse_epsilons(text: str) -> list[float]:
    """``"inf,16,8"`` as ``[inf, 16.0, 8.0]``: target epsilons, ``inf`` meaning no DP, each at most once.

    Raises:
        PrivauditError: an entry that is not a number, a value <= 0 or NaN, a repeat, or an empty list.
    """
    values: list[float] = []
    for raw in str(text).split(","):
        item = raw.strip().lower()
        if not item:
            continue
        try:
            value = math.inf if item in ("inf", "infinity", "none") else float(item)
        except ValueError:
            raise PrivauditError(f"--epsilons: '{raw.strip()}' is not a number; give e.g. inf,16,8,4,2,1") from None
        if math.isnan(value) or value <= 0:
            raise PrivauditError(f"--epsilons: {raw.strip()} is not above 0; use inf for no DP")
        if value in values:
            raise PrivauditError(f"--epsilons: {raw.strip()} is given twice")
        values.append(value)
    if not values:
        raise PrivauditError("--epsilons is empty; give e.g. inf,16,8,4,2,1")
    return values


def point_name(target_epsilon: float) -> str:
    """The point's directory name: ``eps-inf``, ``eps-8``, ``eps-0.5``."""
    return "eps-inf" if math.isinf(target_epsilon) else f"eps-{target_epsilon:g}"


@dataclass(frozen=True)
class SweepRequest:
    """Everything ``privaudit sweep`` was asked to do.

    Attributes:
        recipe: the training job every point shares (data, model, training flags, canaries); its ``out``, ``dp``,
            ``target_epsilon`` and ``canaries_out`` are set per point.
        epsilons: target epsilons, ``inf`` for no DP.
        out: the sweep's directory: points, reference models, ``sweep.json`` and ``sweep.html``.
        non_members: examples not trained on: the membership audit's non-members, and the utility's test set.
        population: more examples of the distribution, for reference models and RMIA.
        attacks: membership attacks (``--attack``), default ``loss``.
        attack_options: ``ATTACK:PARAM=VALUE`` settings.
        reference_models: reference models per point, trained with that point's recipe.
        seed: the audit's seed (reference models, bootstrap, splits).
        extract: run ModIvA on the planted canaries.
        modiva_steps: ModIvA's optimisation steps.
        modiva_restarts: ModIvA's restarts.
        device: where the audits score (``privaudit.device``); the points train on the recipe's ``device``.
        precision: the audits' scoring precision.
        executor: where the points and their reference models train: ``local`` (one after another, here) or
            ``ray`` (one Ray task each, with ``ray``'s options).
        ray: ``--executor ray``'s options (cluster address, workers, CPUs and GPUs per job, retries).
        dp_lr: the DP points' learning rate (``--dp-lr``); ``None``: the recipe's. Clipping bounds every step, so
            DP-SGD recipes commonly take a larger step than the same recipe without DP.
        group_by: audit users, not records (``--group-by``): the data column naming each record's owner, in the
            training data, the non-members and the population alike.
        group_aggregate: how a user's record scores become one (``--group-aggregate``); ``None``: chosen.
    """

    recipe: TrainJob
    epsilons: tuple[float, ...]
    out: Path
    non_members: Path
    population: Path | None = None
    attacks: str | None = None
    attack_options: tuple[str, ...] = ()
    reference_models: int = 0
    seed: int = 0
    extract: bool = True
    modiva_steps: int = 300
    modiva_restarts: int = 16
    device: str = "cpu"
    precision: str = "fp32"
    executor: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)
    dp_lr: float | None = None
    group_by: str | None = None
    group_aggregate: str | None = None


@dataclass
class SweepResult:
    """A whole sweep: one row per point, data first (``to_dict`` is ``sweep.json``)."""

    request: SweepRequest
    points: list[dict] = field(default_factory=list)

    def exceeded(self) -> list[tuple[str, str, float, float]]:
        """(point, attack or audit, empirical bound, theoretical epsilon) wherever a bound is above the claim."""
        found = []
        for row in self.points:
            eps = row["epsilon"]
            if eps is None:
                continue
            bounds = [(a["name"], a["epsilon_lower_bound"]) for a in row["attacks"]]
            users = row.get("users")
            if users is not None:  # per-user bounds answer to the group-privacy ε, when it holds at the audit's δ
                group = users["group_privacy"]
                fits = group is not None and group["epsilon"] is not None and group["delta"] is not None
                if fits and group["delta"] <= row["delta"]:
                    found += [(row["name"], n, b, group["epsilon"]) for n, b in bounds if b > group["epsilon"]]
                bounds = []
            if row.get("one_run"):
                bounds.append(("one-run", row["one_run"]["epsilon_lower_bound"]))
            if row.get("white_box"):  # the strict (eps, delta)-family bound only: the Gaussian one assumes a curve
                bounds.append(("white-box f-DP", row["white_box"]["eps_delta"]))
            found += [(row["name"], name, bound, eps) for name, bound in bounds if bound > eps]
        return found

    def to_dict(self) -> dict:
        """The ``sweep.json`` document; its layout is ``docs/schema-sweep.json``, versioned by ``schema``."""
        r = self.request
        return {
            "schema": SCHEMA,
            "tool": {"name": "privaudit", "version": __version__},
            "data": str(r.recipe.data),
            "non_members": str(r.non_members),
            "population": None if r.population is None else str(r.population),
            "recipe": _jsonable(asdict(replace(r.recipe, out=Path("."), canaries_out=None))),
            "attacks": r.attacks or "loss",
            "reference_models": r.reference_models,
            "dp_lr": r.dp_lr,
            "group_by": r.group_by,
            "seed": r.seed,
            "points": self.points,
        }


def _jsonable(value: dict) -> dict:
    return json.loads(json.dumps(value, default=str))


def point_jobs(request: SweepRequest) -> list[TrainJob]:
    """One training job per target epsilon: the recipe, with DP-SGD at that epsilon (none at ``inf``).

    The recipe's gradient canaries go to the DP points only: they audit DP-SGD's noise, which the ``inf`` point lacks.
    Paths are absolute, so that any executor (a Ray worker does not run in this directory) runs the same job.
    """
    recipe = request.recipe
    if isinstance(recipe.data, Path):
        recipe = replace(recipe, data=recipe.data.resolve())
    points = request.out.resolve() / "points"
    jobs = []
    for eps in request.epsilons:
        name = point_name(eps)
        dp = not math.isinf(eps)
        gradient = recipe.gradient_canaries if dp else 0
        wants_canaries = recipe.canary is not None or recipe.audit_canaries > 0 or gradient > 0
        jobs.append(
            replace(
                recipe,
                out=points / name,
                dp=dp,
                lr=request.dp_lr if dp and request.dp_lr is not None else recipe.lr,
                target_epsilon=eps if dp else None,
                noise_multiplier=None,
                gradient_canaries=gradient,
                canaries_out=points / f"{name}.canaries.jsonl" if wants_canaries else None,
                overwrite=True,
            )
        )
    return jobs


def _job_file(job: TrainJob) -> Path:
    return job.out.with_name(job.out.name + ".job.json")


_PATHS = ("data", "out", "base", "canaries_out")


def _job_record(job: TrainJob) -> dict:
    """What decides the point's model: the job, less the device it ran on (a point trained on a Ray worker, or on a
    GPU, is the same point)."""
    return _normal(_jsonable(asdict(job)))


def _normal(record: dict) -> dict:
    """A job record without its device and with absolute paths, so that records written with relative paths (by an
    older privaudit) still match."""
    record = {k: v for k, v in record.items() if k != "device"}
    for key in _PATHS:
        if isinstance(record.get(key), str):
            record[key] = str(Path(record[key]).resolve())
    return record


def is_complete(job: TrainJob) -> bool:
    """Whether the job's model directory is complete (and its canary file written) and was trained by this very
    job (``OUT/points/NAME.job.json``), so that it need not retrain: a changed recipe retrains its points.

    A point trained by this job whose files fail their check (the content record written with it, which covers its
    canary file too, and the model files' own checks) is damaged: it is moved aside with one warning line and trained
    again.
    """
    if not job.out.is_dir() or not _job_file(job).is_file():
        return False
    try:
        if _normal(json.loads(_job_file(job).read_text(encoding="utf-8"))) != _job_record(job):
            return False
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
    problem = _point_problem(job)
    if problem is None:
        return True
    move_aside(job.out, problem, what="sweep point", then="training it again")
    _job_file(job).unlink(missing_ok=True)
    return False


def _point_problem(job: TrainJob) -> str | None:
    """What is wrong with a trained point's files, or ``None``."""
    if job.canaries_out is not None and not job.canaries_out.is_file():
        return f"its canary file {job.canaries_out.name} is missing"
    problem = integrity.entry_problem(job.out)
    if problem is not None:
        return problem
    try:
        check_model_dir(job.out)
    except PrivauditError as err:
        return str(err)
    return None if (job.out / RECIPE_FILE).is_file() else f"no {RECIPE_FILE}"


def train_point(
    job: TrainJob, torch_threads: int | None = None, on_step: Callable[[int, int], None] | None = None
) -> str:
    """Train one point unless it is complete; ``"trained"`` or ``"cached"``. Idempotent, so a retried task is safe."""
    if is_complete(job):
        return "cached"
    _job_file(job).unlink(missing_ok=True)
    with threads(torch_threads):
        run_train(job, on_step=on_step)
    integrity.write_entry_record(job.out, beside=[job.canaries_out] if job.canaries_out is not None else [])
    _job_file(job).write_text(json.dumps(_job_record(job), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return "trained"


def run_points(
    jobs: Sequence[TrainJob],
    *,
    executor: str = "local",
    ray: RayOptions | None = None,
    on_job: Callable[[int, int, str], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> list[str]:
    """Train every job that is not complete yet; return each job's status, ``"trained"`` or ``"cached"``, in order.

    ``local`` trains them one after another, here, with progress by step; ``ray`` submits one task per job (Ray
    reserves ``ray.cpus_per_job`` CPUs, and ``ray.gpus_per_job`` GPUs, for each; above 0 GPUs the job trains on
    CUDA) and reports each job as it finishes, in any order. Either way every job's model directory is complete on
    return.

    Args:
        jobs: training jobs, each writing its own model directory (absolute paths for ``ray``).
        executor: ``local`` or ``ray``.
        ray: ``ray``'s options.
        on_job: called with (jobs done, total, status) as each job becomes available.
        on_step: training progress, (job index, steps done, total steps); ``local`` only.

    Raises:
        PrivauditError: an unknown executor; a job that cannot train; (ray) a cluster that cannot run the jobs.
    """
    if executor not in EXECUTORS:
        raise PrivauditError(f"--executor '{executor}' is unknown; use one of {', '.join(EXECUTORS)}")
    statuses: dict[int, str] = {}

    def done(i: int, status: str) -> None:
        statuses[i] = status
        if on_job is not None:
            on_job(len(statuses), len(jobs), status)

    if executor == "local" or not jobs:
        for i, job in enumerate(jobs):
            step = None if on_step is None else (lambda d, t, i=i: on_step(i, d, t))
            done(i, train_point(job, on_step=step))
        return [statuses[i] for i in range(len(jobs))]
    from privaudit.training.ray_executor import run_tasks

    options = ray or RayOptions()
    device = "cuda" if options.gpus_per_job > 0 else "cpu"
    remote = [(i, replace(job, device=device)) for i, job in enumerate(jobs)]
    run_tasks(
        train_point,
        [job for _, job in remote],
        args=(options.cpus_per_job,),
        options=options,
        shared_dir=jobs[0].out.parent,
        what="the sweep directory {path} (--out)",
        name=lambda job: f"sweep point {job.out.name}",
        on_done=lambda job, status: done(next(i for i, j in remote if j is job), status),
    )
    return [statuses[i] for i in range(len(jobs))]


def run_sweep(request: SweepRequest, *, progress: Progress | None = None) -> SweepResult:
    """Train (or find) every point, audit each, and write ``sweep.json`` into ``request.out``.

    Raises:
        PrivauditError: bad input; a point that cannot train or be audited.
    """
    from privaudit.sweep.audit import audit_point, check_audit

    def tell(stage: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(stage, done, total)

    if not request.epsilons:
        raise PrivauditError("--epsilons is empty; give e.g. inf,16,8,4,2,1")
    if not request.non_members.is_file():
        raise PrivauditError(f"{request.non_members}: --non-members file not found")
    check_audit(request)  # before any point trains
    jobs = point_jobs(request)
    with _cluster(request):
        tell("training points", 0, len(jobs))
        statuses = run_points(
            jobs,
            executor=request.executor,
            ray=request.ray,
            on_job=lambda i, n, _s: tell("training points", i, n),
            on_step=lambda i, done, total: tell(f"training {jobs[i].out.name}", done, total),
        )
        result = SweepResult(request=request)
        for i, (eps, job, status) in enumerate(zip(request.epsilons, jobs, statuses)):
            tell("auditing points", i, len(jobs))
            row = audit_point(job, request=request, progress=progress)
            result.points.append(
                {"name": point_name(eps), "target_epsilon": None if math.isinf(eps) else eps, "status": status, **row}
            )
        tell("auditing points", len(jobs), len(jobs))
    write_json(result, request.out / RESULT_FILE)
    return result


@contextmanager
def _cluster(request: SweepRequest) -> Iterator[None]:
    """With ``--executor ray``, one connection (or local cluster) for the whole sweep: the points and every point's
    reference models, rather than a local cluster started and stopped for each."""
    if request.executor != "ray":
        yield
        return
    from privaudit.training.ray_executor import connect, shutdown

    started = connect(request.ray)
    try:
        yield
    finally:
        if started:
            shutdown()


def write_json(result: SweepResult, path: Path) -> None:
    """Write ``sweep.json`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


__all__ = ["SweepRequest", "SweepResult", "parse_epsilons", "point_jobs", "run_points", "run_sweep", "SCHEMA"]

"""Audit one sweep point: membership attacks, canaries, utility; one plain row of ``sweep.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from privaudit.canary.run import CanaryRequest, run_canary
from privaudit.data import encode_labels, read_dataset
from privaudit.device import Compute
from privaudit.errors import PrivauditError
from privaudit.mia.run import MiaRequest, run_mia
from privaudit.stats.metrics import epsilon_lower_bound
from privaudit.target import RECIPE_FILE, Target
from privaudit.training.job import TrainJob

# The empirical epsilon is stated as a 95% lower bound; the 50% bound beside it is a median estimate, drawn as the
# top of its interval in the report.
MEDIAN_ALPHA = 0.5


def utility(target: Target, path) -> dict:
    """Accuracy and macro-F1 (over the labels that occur) on a labelled file the model was not trained on."""
    from sklearn.metrics import accuracy_score, f1_score

    data = read_dataset(path)
    truth = encode_labels(data, target.label2id)
    predicted = target.logits(list(data.texts)).argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "n": len(truth),
    }


def check_audit(request) -> None:
    """Refuse, before any point trains, a membership audit that could not run on the points: an unknown attack or
    option, an attack that needs reference models without ``--reference-models``, or one that needs the population
    (reference models train on it; RMIA scores it) without ``--population``.

    Raises:
        PrivauditError: naming the flag to pass.
    """
    from privaudit.mia.registry import build_attacks, resolve

    attacks = build_attacks(resolve(request.attacks or "loss"), request.attack_options)
    for attack in attacks:
        wants_references = attack.requires & {"reference_logits", "population_reference_logits"}
        fewest = 2 if attack.online else 1
        if wants_references and request.reference_models < fewest:
            raise PrivauditError(
                f"attack '{attack.name}' needs reference models: pass --reference-models K (K >= {fewest})"
            )
        wants_population = wants_references or "population_logits" in attack.requires
        if wants_population and request.population is None:
            raise PrivauditError(
                f"attack '{attack.name}' needs population examples (non-members from the training distribution, the "
                "reference models' pool): pass --population FILE"
            )
    if request.population is not None and not Path(request.population).is_file():
        raise PrivauditError(f"{request.population}: --population file not found")
    if request.group_by is not None:
        from privaudit.mia.users import check_aggregate, check_users

        check_aggregate(request.group_aggregate)
        members = read_dataset(request.recipe.data, group_by=request.group_by)
        non_members = read_dataset(request.non_members, group_by=request.group_by)
        population = None
        if request.population is not None:
            population = read_dataset(request.population, group_by=request.group_by)
        check_users(members, non_members, population)


def _tpr_at(metrics, fpr: float) -> dict:
    hit = next(t for t in metrics.tpr_at_fpr if math.isclose(t.fpr, fpr))
    return {"tpr": hit.tpr, "low": hit.low, "high": hit.high}


def audit_point(job: TrainJob, *, request, progress: Callable[[str, int, int | None], None] | None = None) -> dict:
    """Audit the model ``job`` trained; ``request`` is the :class:`~privaudit.sweep.run.SweepRequest`.

    Returns:
        The point's row, plain data: theoretical epsilon, utility, each attack's AUC, TPR at 1% FPR and epsilon
        lower bounds, the best empirical epsilon, the canary audits, and the gradient canaries' white-box bounds.
    """
    recipe = json.loads((job.out / RECIPE_FILE).read_text(encoding="utf-8"))
    dp = recipe.get("dp") or None
    mia = run_mia(
        MiaRequest(
            model_dir=job.out,
            members=job.data,
            non_members=request.non_members,
            attacks=request.attacks,
            attack_options=request.attack_options,
            population=request.population,
            reference_models=request.reference_models,
            seed=request.seed,
            group_by=request.group_by,
            group_aggregate=request.group_aggregate,
            cache_dir=request.out / "reference",
            device=request.device,
            precision=request.precision,
            executor=request.executor,
            ray_address=request.ray.address,
            workers=request.ray.workers,
            cpus_per_job=request.ray.cpus_per_job,
            gpus_per_job=request.ray.gpus_per_job,
            max_retries=request.ray.max_retries,
        ),
        progress=progress,
    )
    attacks = []
    for a in mia.attacks:
        m = a.metrics
        median = epsilon_lower_bound(a.scores, mia.is_member, alpha=MEDIAN_ALPHA, delta=mia.delta, seed=request.seed)
        attacks.append(
            {
                "name": a.name,
                "auc": {"value": m.auc.value, "low": m.auc.low, "high": m.auc.high},
                "tpr_at_1%fpr": _tpr_at(m, 0.01),
                "tpr_at_0.1%fpr": _tpr_at(m, 0.001),
                "advantage": m.advantage,
                "epsilon_lower_bound": m.epsilon_lower_bound,
                "epsilon_lower_bound_50": float(median),
            }
        )
    best = max(attacks, key=lambda a: a["epsilon_lower_bound"]) if attacks else None
    target = Target.load(job.out, compute=Compute.from_flags(request.device, request.precision))
    row = {
        "model": str(job.out),
        "dp": dp is not None,
        "epsilon": None if dp is None else float(dp["epsilon"]),
        "delta": mia.delta,
        "noise_multiplier": None if dp is None else float(dp["noise_multiplier"]),
        "train_accuracy": recipe.get("train_accuracy"),
        "trainable_parameters": (recipe.get("trainable") or {}).get("parameters"),
        "utility": utility(target, request.non_members),
        "attacks": attacks,
        "empirical_epsilon": None
        if best is None
        else {
            "attack": best["name"],
            "lower_bound": best["epsilon_lower_bound"],
            "median": max(best["epsilon_lower_bound_50"], best["epsilon_lower_bound"]),
            "confidence": 1 - mia.attacks[0].metrics.alpha,
        },
        "canaries": None,
        "one_run": None,
        "white_box": white_box(job) if job.gradient_canaries and dp is not None else None,
    }
    if mia.users is not None:  # the attacks' numbers above are per user; the group-privacy ε is their theory
        users = mia.users.to_dict()
        row["users"] = {
            "n_members": mia.n_members,
            "n_non_members": mia.n_non_members,
            "aggregate": users["aggregate"],
            "max_records": users["records_per_user"]["max"],
            "group_privacy": users["group_privacy"],
            "record_level": users["record_level"],
        }
    if job.canaries_out is not None and (job.canary is not None or job.audit_canaries > 0):
        result = run_canary(
            CanaryRequest(
                model_dir=job.out,
                canaries=job.canaries_out,
                extract=request.extract and job.canary is not None,
                one_run=job.audit_canaries > 0,
                seed=request.seed,
                modiva_steps=request.modiva_steps,
                modiva_restarts=request.modiva_restarts,
                device=request.device,
                precision=request.precision,
            ),
            progress=progress,
        )
        inserted = result.group(True)
        if inserted:
            summary = result.to_dict()["summary"]
            space = math.prod(len(a) for a in inserted[0].canary.alphabets)
            # Exposure log2|space| means rank 1 among every candidate: what the best possible search would return.
            rank1 = sum(
                1 for r in inserted if r.exposure is not None and round(2 ** (math.log2(space) - r.exposure)) == 1
            )
            row["canaries"] = {
                "n_inserted": summary["n_inserted"],
                "n_controls": summary["n_controls"],
                "mean_exposure_inserted": summary["mean_exposure_inserted"],
                "mean_exposure_controls": summary["mean_exposure_controls"],
                "max_exposure_inserted": summary["max_exposure_inserted"],
                "log2_space": math.log2(space),
                "rank1_inserted": rank1,
                "extracted_inserted": summary["extracted_inserted"] if request.extract else None,
                "extracted_controls": summary["extracted_controls"] if request.extract else None,
            }
        if result.one_run is not None:
            row["one_run"] = {
                "epsilon_lower_bound": float(result.one_run.epsilon_lower_bound),
                "m": int(result.one_run.m),
            }
    return _finite(row)


def white_box(job: TrainJob) -> dict:
    """The white-box f-DP one-run audit of the point's gradient canaries, as ``privaudit dp-audit MODEL -c FILE``."""
    from privaudit.canary.dpaudit import DpAuditRequest, run_dp_audit

    audit = run_dp_audit(DpAuditRequest(model_dir=job.out, canaries=job.canaries_out, canary_kind="gradient"))
    b = audit.bounds
    return {
        "m": b.m,
        "alpha": b.alpha,
        "eps_delta": b.eps_delta.epsilon,
        "gaussian": b.gaussian.epsilon,
        "gaussian_mu": b.gaussian.mu,
        "steinke": b.steinke.epsilon,
        "guesses": b.eps_delta.guesses,
        "correct": b.eps_delta.correct,
        "assumes": b.gaussian.assumes,
    }


def _finite(value):
    """JSON has no infinity: a non-finite number becomes ``None``."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value

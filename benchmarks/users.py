"""User-level membership inference on the fixture's users: record-level against user-level power, and the
group-privacy ε beside the measured bound (issue 22).

``privaudit mia --group-by user_id`` on ``fixtures/data/users/*.jsonl`` (the fixture's records with a ``user_id``:
241 member users and 241 non-member users, 1-30 records each), for ``intent-tiny`` (no DP) and ``intent-tiny-dp``
(ε 8), with LOSS and every aggregation given by ``--group-aggregate``. The record-level row is the same audit per
record. Then ``auto``: LOSS and RMIA with 2 offline reference models trained by user on the population's users
(``privaudit.training.reference``; cached under ``.cache/bench/reference-users``), the aggregation chosen on them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from privaudit.mia.run import MiaRequest, run_mia
from privaudit.stats.groups import AGGREGATES

ROOT = Path(__file__).resolve().parent.parent
USERS = ROOT / "fixtures" / "data" / "users"
MODELS = {"inf": ROOT / "fixtures" / "models" / "intent-tiny", "8": ROOT / "fixtures" / "models" / "intent-tiny-dp"}
ATTACK = "loss"
HEAVY = 10  # users with at least this many records: the check
AUTO_ATTACKS = "loss,rmia"
AUTO_REFERENCE_MODELS = 2
CACHE = ROOT / ".cache" / "bench" / "reference-users"


def _heavy(scores: np.ndarray, is_member: np.ndarray) -> dict:
    """AUC and TPR at the strictest threshold with FPR <= 1% (with 25 non-member users: above every one of them)."""
    fpr, tpr, _ = roc_curve(is_member, scores)
    return {"auc": float(roc_auc_score(is_member, scores)), "tpr_at_1%": float(tpr[fpr <= 0.01].max())}


def _row(result) -> dict:
    m = result.attacks[0].metrics
    at_1 = next(t for t in m.tpr_at_fpr if abs(t.fpr - 0.01) < 1e-12)
    return {
        "auc": m.auc.value,
        "tpr_at_1%": at_1.tpr,
        "tpr_at_1%_low": at_1.low,
        "tpr_at_1%_high": at_1.high,
        "epsilon_lower_bound": m.epsilon_lower_bound,
        "n_members": result.n_members,
        "n_non_members": result.n_non_members,
    }


def run(repeats: int) -> dict:
    """The ``user-level`` section: one row per (model, record level or aggregation)."""
    del repeats  # deterministic measurements
    start = time.perf_counter()
    points = {}
    owners = [json.loads(line)["user_id"] for f in ("members", "non_members") for line in (USERS / f"{f}.jsonl").open()]
    size = Counter(owners)
    heavy_records = np.array([size[o] >= HEAVY for o in owners])
    for eps_name, model in MODELS.items():
        base = {"model_dir": model, "members": USERS / "members.jsonl", "non_members": USERS / "non_members.jsonl"}
        record = run_mia(MiaRequest(**base, attacks=ATTACK))
        rows = {"records": _row(record)}
        heavy = {"records": _heavy(record.attacks[0].scores[heavy_records], record.is_member[heavy_records])}
        users = None
        for how in AGGREGATES:
            result = run_mia(MiaRequest(**base, attacks=ATTACK, group_by="user_id", group_aggregate=how))
            rows[how] = _row(result)
            users = result.to_dict()["users"]
            big = result.examples.records >= HEAVY
            heavy[how] = _heavy(result.attacks[0].scores[big], result.is_member[big])
            heavy[how]["n_users"] = int(big.sum())
        heavy["records"]["n_records"] = int(heavy_records.sum())
        auto = run_mia(
            MiaRequest(
                **base,
                attacks=AUTO_ATTACKS,
                population=USERS / "population.jsonl",
                reference_models=AUTO_REFERENCE_MODELS,
                group_by="user_id",
                cache_dir=CACHE,
            )
        )
        auto_doc = auto.to_dict()
        points[eps_name] = {
            "auto": {
                "aggregate": auto_doc["users"]["aggregate"],
                "aggregate_tpr_at_1pct_fpr": auto_doc["users"]["aggregate_tpr_at_1pct_fpr"],
                "attacks": {
                    a["name"]: {
                        "params": a["params"],
                        "auc": a["auc"]["value"],
                        "tpr_at_1%": a["tpr_at_fpr"][1]["tpr"],
                        "epsilon_lower_bound": a["epsilon_lower_bound"],
                        "record_auc": auto_doc["users"]["record_level"][a["name"]]["auc"],
                        "record_tpr_at_1%": auto_doc["users"]["record_level"][a["name"]]["tpr_at_fpr"][1]["tpr"],
                        "record_epsilon_lower_bound": auto_doc["users"]["record_level"][a["name"]][
                            "epsilon_lower_bound"
                        ],
                    }
                    for a in auto_doc["attacks"]
                },
            },
            "model": str(model.relative_to(ROOT)),
            "theoretical_epsilon": record.theoretical_epsilon,
            "delta": record.delta,
            "rows": rows,
            "heavy_users": heavy,
            "records_per_user": users["records_per_user"],
            "group_privacy": users["group_privacy"],
        }
    return {"seconds": {"whole section": time.perf_counter() - start}, "attack": ATTACK, "points": points}


def _pct(x: float | None, low: float | None = None, high: float | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1%}" + ("" if low is None else f" [{low:.1%}, {high:.1%}]")


def markdown(data: dict) -> list[str]:
    """The section's text for BENCHMARKS.md (benchmarks/report.py)."""
    first = next(iter(data["points"].values()))
    spread = first["records_per_user"]
    lines = [
        f"`privaudit mia --group-by user_id --attack {data['attack']}` on the fixture's users "
        f"(`fixtures/data/users/*.jsonl`: {first['rows']['mean']['n_members']} member and "
        f"{first['rows']['mean']['n_non_members']} non-member users, {spread['min']}-{spread['max']} records each, "
        f"median {spread['median']:g}), against the same audit per record (1000 members, 1000 non-members). "
        "TPR at 1% FPR with its 95% Clopper-Pearson interval; ε ≥ is the 95% empirical lower bound at the audit's δ.\n",
        "| model (ε) | level | AUC | TPR at 1% FPR | ε ≥ |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for eps_name, point in data["points"].items():
        for level, row in point["rows"].items():
            name = "records" if level == "records" else f"users, {level}"
            lines.append(
                f"| `{Path(point['model']).name}` (ε {eps_name}) | {name} | {row['auc']:.3f} | "
                f"{_pct(row['tpr_at_1%'], row['tpr_at_1%_low'], row['tpr_at_1%_high'])} | "
                f"{row['epsilon_lower_bound']:.2f} |"
            )
    lines += [
        "",
        f"Users with {HEAVY}+ records only ({first['heavy_users']['mean']['n_users']} users, half of them members; "
        f"{first['heavy_users']['records']['n_records']} records): too few non-member users for a Clopper-Pearson "
        "TPR at 1% FPR, so this is the TPR at the strictest threshold whose FPR is at most 1% (for the users: above "
        "every non-member user), beside the same records' record-level numbers.\n",
        "| model (ε) | level | AUC | TPR at FPR <= 1% |",
        "| --- | --- | ---: | ---: |",
    ]
    for eps_name, point in data["points"].items():
        for level, row in point["heavy_users"].items():
            name = "records" if level == "records" else f"users, {level}"
            lines.append(
                f"| `{Path(point['model']).name}` (ε {eps_name}) | {name} | {row['auc']:.3f} | {row['tpr_at_1%']:.1%} |"
            )
    if "auto" in first:
        lines += [
            "",
            f"`--group-aggregate auto` with {AUTO_REFERENCE_MODELS} offline reference models drawn by user from the "
            "population's users: the aggregation is chosen on them (the LOSS signal, mean TPR at 1% FPR over the "
            "reference-model games), never with the audit's membership.\n",
            "| model (ε) | chosen | attack | AUC records → users | TPR at 1% FPR records → users | ε ≥ records → users |",
            "| --- | --- | --- | ---: | ---: | ---: |",
        ]
        for eps_name, point in data["points"].items():
            auto = point["auto"]
            for name, a in auto["attacks"].items():
                extra = ""
                if "temperature_used" in a["params"]:
                    extra = f" (a = {a['params']['a_used']:g}, T = {a['params']['temperature_used']:g})"
                lines.append(
                    f"| `{Path(point['model']).name}` (ε {eps_name}) | {auto['aggregate']} | {name}{extra} | "
                    f"{a['record_auc']:.3f} → {a['auc']:.3f} | {_pct(a['record_tpr_at_1%'])} → {_pct(a['tpr_at_1%'])} | "
                    f"{a['record_epsilon_lower_bound']:.2f} → {a['epsilon_lower_bound']:.2f} |"
                )
    lines += ["", "| model | record-level ε (δ) | largest user k | group privacy kε (δ) | best user-level ε ≥ |"]
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for point in data["points"].values():
        bounds = [r["epsilon_lower_bound"] for level, r in point["rows"].items() if level != "records"]
        bounds += [a["epsilon_lower_bound"] for a in point.get("auto", {}).get("attacks", {}).values()]
        best = max(bounds)
        group = point["group_privacy"]
        eps = point["theoretical_epsilon"]
        theory = "∞ (no DP)" if eps is None else f"{eps:.3f} ({point['delta']:g})"
        if group is None:
            grouped = "∞ (no DP)"
        else:
            delta = "overflows" if group["delta"] is None else f"{group['delta']:.3g}"
            grouped = f"{group['epsilon']:.1f} ({delta}{': no guarantee' if group['vacuous'] else ''})"
        k = point["records_per_user"]["max"]
        lines.append(f"| `{Path(point['model']).name}` | {theory} | {k} | {grouped} | {best:.2f} |")
    lines.append(
        "\nGroup privacy: (ε, δ)-DP per record gives (kε, k·e^((k-1)ε)·δ)-DP for k records (Vadhan 2017, Lemma 2.2). "
        "At ε 8 its δ is far above 1 for the largest user, so the record-level guarantee promises nothing about a "
        "user's membership; the measured user-level bound is what an audit can state. Over all users (most own 1-4 "
        "records) not every aggregation beats the record level (first table): half as many subjects widen the "
        "intervals, and a user of one record is no easier than its record. "
    )
    for eps_name, point in data["points"].items():
        rows = point["heavy_users"]
        rec = rows["records"]
        behind = [
            f"{how} ({metric} {row[metric]:.3f} against {rec[metric]:.3f})"
            for how, row in rows.items()
            if how != "records"
            for metric in ("auc", "tpr_at_1%")
            if row[metric] < rec[metric]
        ]
        lines[-1] += f"At ε {eps_name}, users with {HEAVY}+ records: " + (
            "every aggregation is at least the record level on AUC and TPR. "
            if not behind
            else "below the record level: " + "; ".join(behind) + ". "
        )
    return lines

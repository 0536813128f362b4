"""Attack power per compute: TPR at 1% FPR against the number of reference models, on the fixture ``intent-tiny``.

LOSS needs no reference model; LiRA (offline and online) and RMIA get K = 1, 2, 4 and 8. Reference models come from
privaudit's own cache (``privaudit.training.reference``), which keys model ``i`` by the recipe, the data and the seed but not
by K, so the first K of the eight models are exactly the models ``privaudit mia --reference-models K`` would train:
eight offline and eight online models serve every K, and the peers section reuses them.

The helpers here (one scoring pass of the target, reference signals from the shared cache, one attack measured the
same way as ``privaudit mia`` measures it) are shared with ``benchmarks/peers.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from privaudit.attacks.rmia import DEFAULT_A
from privaudit.data import encode_labels, read_dataset
from privaudit.mia.registry import get_attack
from privaudit.mia.signals import Signals
from privaudit.stats.metrics import AttackMetrics, evaluate
from privaudit.target import Target
from privaudit.training.reference import ReferenceSignals, reference_signals

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "fixtures" / "data"
TARGET = ROOT / "fixtures" / "models" / "intent-tiny"
CACHE = ROOT / ".cache" / "bench"
REFERENCE_CACHE = CACHE / "reference"
RESULTS = ROOT / "benchmarks" / "results"
PLOT = RESULTS / "power.png"

# Two threads: `make bench` runs its sections one after another and has the machine's 2 cores to itself (the fixture
# models train in 26 s with two threads, 37 s with one). Run nothing else beside it: on two cores shared with another
# job, two OpenMP threads spin against each other and a training step of the tiny model took ten times longer.
THREADS = 2
SEED = 0
DELTA = 1e-5  # as privaudit mia's default
KS = (1, 2, 4, 8)
UNTUNED = "rmia, a = 0.3 (untuned)"
PLAIN_T = "rmia, T = 1 (a tuned)"  # the plain softmax: RMIA before its temperature was tuned too (issue 22)
SERIES = {
    # name: (attack, reference models trained online)
    "loss": ("loss", False),
    "lira-offline": ("lira-offline", False),
    "lira-online": ("lira-online", True),
    "rmia": ("rmia", False),
    "rmia (online models)": ("rmia", True),
    UNTUNED: (UNTUNED, False),
    PLAIN_T: (PLAIN_T, False),
}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Audit:
    """The audited model and data, scored once: every attack and every tool reads these arrays."""

    target: Target
    texts: list[str]  # members, then non-members
    labels: np.ndarray
    is_member: np.ndarray
    population_texts: list[str]
    population_labels: np.ndarray
    logits: np.ndarray  # target logits on ``texts``
    population_logits: np.ndarray
    scoring_seconds: float


def load_audit(model_dir: Path = TARGET) -> Audit:
    """Read the fixture data the way ``privaudit mia`` does and score it with the target in one pass."""
    target = Target.load(model_dir)
    members, non_members = read_dataset(DATA / "members.jsonl"), read_dataset(DATA / "non_members.jsonl")
    population = read_dataset(DATA / "population.jsonl")
    texts = list(members.texts) + list(non_members.texts)
    labels = np.concatenate([encode_labels(members, target.label2id), encode_labels(non_members, target.label2id)])
    is_member = np.r_[np.ones(len(members), dtype=bool), np.zeros(len(non_members), dtype=bool)]
    start = time.perf_counter()
    logits = target.logits(texts + list(population.texts))
    seconds = time.perf_counter() - start
    return Audit(
        target=target,
        texts=texts,
        labels=labels,
        is_member=is_member,
        population_texts=list(population.texts),
        population_labels=encode_labels(population, target.label2id),
        logits=logits[: len(texts)],
        population_logits=logits[len(texts) :],
        scoring_seconds=seconds,
    )


@dataclass
class References:
    """K reference models' signals and what they cost."""

    signals: ReferenceSignals
    online: bool
    trained: int  # models trained in this run (the others came from the cache)
    train_seconds: list[float]  # per model: training and scoring, as recorded when it was trained
    cached_seconds: list[float]  # per model loaded from the cache this run: loading and scoring


def _ledger_key(audit: Audit, online: bool, index: int) -> str:
    return f"{audit.target.fingerprint()[:16]}/{'online' if online else 'offline'}/{index}"


def references(audit: Audit, *, n_models: int, online: bool, cache_dir: Path = REFERENCE_CACHE) -> References:
    """Train (or load from privaudit's cache) ``n_models`` reference models the way ``privaudit mia`` does.

    A model's training time is measured once, when it is trained, and kept in a ledger beside the cache, so a cached
    run still reports what the models cost.
    """
    ledger_file = cache_dir / "seconds.json"
    ledger = json.loads(ledger_file.read_text()) if ledger_file.is_file() else {}
    per_model: list[float] = []
    cached: list[float] = []
    trained = [0]
    last = [time.perf_counter()]

    def on_model(i: int, _total: int, status: str) -> None:
        now = time.perf_counter()
        elapsed, last[0] = now - last[0], now
        key = _ledger_key(audit, online, i - 1)
        if status == "trained":
            trained[0] += 1
            ledger[key] = elapsed
        else:
            cached.append(elapsed)
        if key in ledger:  # a model cached by an older run without the ledger has no recorded cost
            per_model.append(ledger[key])

    signals = reference_signals(
        audit.target,
        audited_texts=audit.texts,
        audited_labels=audit.labels,
        population_texts=audit.population_texts,
        population_labels=audit.population_labels,
        n_models=n_models,
        online=online,
        seed=SEED,
        cache_dir=cache_dir,
        on_model=on_model,
    )
    if trained[0]:
        ledger_file.parent.mkdir(parents=True, exist_ok=True)
        ledger_file.write_text(json.dumps(ledger, indent=2, sort_keys=True) + "\n")
    return References(signals, online, trained[0], per_model, cached)


def signals_with(audit: Audit, refs: References | None, k: int) -> Signals:
    """The target's signals with the first ``k`` reference models: what ``--reference-models k`` gives an attack."""
    ref = refs.signals if refs is not None and k > 0 else None
    return Signals(
        logits=audit.logits,
        labels=audit.labels,
        reference_logits=None if ref is None else ref.logits[:k],
        reference_in=None if ref is None else ref.is_in[:k],
        population_logits=audit.population_logits,
        population_labels=audit.population_labels,
        population_reference_logits=None if ref is None else ref.population_logits[:k],
        population_reference_in=None if ref is None else ref.population_is_in[:k],
    )


def measure(scores: np.ndarray, is_member: np.ndarray) -> AttackMetrics:
    """Every tool's scores go through this one function: privaudit's metrics, at privaudit mia's settings."""
    return evaluate(np.asarray(scores, dtype=np.float64).ravel(), is_member, alpha=0.05, delta=DELTA, seed=SEED)


def summary(metrics: AttackMetrics) -> dict:
    """AUC and TPR at 1% and 0.1% FPR, with their 95% intervals, as plain numbers."""
    tpr = {t.fpr: t for t in metrics.tpr_at_fpr}
    return {
        "auc": metrics.auc.value,
        "auc_low": metrics.auc.low,
        "auc_high": metrics.auc.high,
        "tpr_at_1%": tpr[0.01].tpr,
        "tpr_at_1%_low": tpr[0.01].low,
        "tpr_at_1%_high": tpr[0.01].high,
        "tpr_at_0.1%": tpr[0.001].tpr,
        "tpr_at_0.1%_low": tpr[0.001].low,
        "tpr_at_0.1%_high": tpr[0.001].high,
        "epsilon_lower_bound": metrics.epsilon_lower_bound,
    }


def attack(name: str, signals: Signals, is_member: np.ndarray) -> tuple[np.ndarray, dict, float]:
    """One privaudit attack on ready signals: its scores, their summary, and the seconds the attack itself took."""
    start = time.perf_counter()
    fixed = {UNTUNED: {"a": DEFAULT_A, "temperature": 1.0}, PLAIN_T: {"temperature": 1.0}}
    instance = get_attack("rmia", **fixed[name]) if name in fixed else get_attack(name)
    scores = np.asarray(instance.score(signals), dtype=np.float64)
    seconds = time.perf_counter() - start
    return scores, summary(measure(scores, is_member)), seconds


def fixture_request(model_dir: Path = TARGET, **options):
    """``privaudit mia`` on ``model_dir`` with the fixture's members and non-members, as the benchmarks run it."""
    from privaudit.mia.run import MiaRequest

    return MiaRequest(
        model_dir=model_dir, members=DATA / "members.jsonl", non_members=DATA / "non_members.jsonl", **options
    )


def run_mia_at(k: int, expected: dict[str, np.ndarray]) -> tuple[dict[str, float], bool]:
    """``privaudit mia --attack A --reference-models k`` per reference attack, from the same cache: the whole
    command's wall time, and whether it gives the scores measured here on the sliced signals."""
    from privaudit.mia.run import run_mia

    seconds, matches = {}, True
    for name in ("reference-loss", "lira-offline", "lira-online", "rmia"):
        request = fixture_request(
            population=DATA / "population.jsonl",
            attacks=name,
            reference_models=k,
            seed=SEED,
            cache_dir=REFERENCE_CACHE,
        )
        start = time.perf_counter()
        result = run_mia(request)
        seconds[f"privaudit mia --attack {name} --reference-models {k} (cached models)"] = time.perf_counter() - start
        if name in expected:
            # To float32 rounding: for LiRA, privaudit mia scores no population, so its batches are padded otherwise.
            matches &= bool(np.allclose(result.attacks[0].scores, expected[name], rtol=1e-5, atol=1e-6))
    return seconds, matches


def plot(data: dict, path: Path) -> None:
    """TPR at 1% FPR against reference models, one line per attack, with 95% Clopper-Pearson bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, (name, rows) in enumerate(data["series"].items()):
        ks = [r["k"] * (1 + 0.025 * (i - 2)) for r in rows]  # a small offset keeps the error bars apart
        tpr = np.array([r["tpr_at_1%"] for r in rows]) * 100
        low = tpr - np.array([r["tpr_at_1%_low"] for r in rows]) * 100
        high = np.array([r["tpr_at_1%_high"] for r in rows]) * 100 - tpr
        if name == "loss":
            ax.axhline(tpr[0], color="grey", linestyle="--", linewidth=1, label="loss (no reference model)")
            ax.errorbar(ks, tpr, yerr=[low, high], fmt="o", color="grey", capsize=3)
            continue
        style = {"linestyle": ":", "color": "black"} if name == UNTUNED else {}
        ax.errorbar(ks, tpr, yerr=[low, high], marker="o", capsize=3, label=name, **style)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks([0, *KS])
    ax.set_xticklabels([str(k) for k in (0, *KS)])
    ax.set_xlabel("reference models trained (K)")
    ax.set_ylabel("TPR at 1% FPR (%)")
    ax.set_title("Attack power per compute: intent-tiny, 1,000 members, 1,000 non-members", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _notes(data: dict) -> str:
    at = {name: {r["k"]: r for r in rows} for name, rows in data["series"].items()}

    def tpr(name: str, k: int) -> str:
        r = at[name][k]
        return f"{r['tpr_at_1%']:.1%} [{r['tpr_at_1%_low']:.1%}, {r['tpr_at_1%_high']:.1%}]"

    parts = [f"LOSS, with no reference model, reaches {tpr('loss', 0)} at 1% FPR (AUC {at['loss'][0]['auc']:.3f}). "]
    behind = []
    for k in (1, 2):
        rmia, offline, online = at["rmia"][k], at["lira-offline"][k], at["lira-online"][k]
        best = max(offline, online, key=lambda r: r["tpr_at_1%"])
        verdict = "beats" if rmia["tpr_at_1%"] > best["tpr_at_1%"] else "does not beat"
        overlap = (
            rmia["tpr_at_1%_low"] <= best["tpr_at_1%"] <= rmia["tpr_at_1%_high"]
            or best["tpr_at_1%_low"] <= rmia["tpr_at_1%"] <= best["tpr_at_1%_high"]
        )
        if verdict == "does not beat" and not overlap:
            behind.append(k)
        parts.append(
            f"K={k}: RMIA {verdict} LiRA at 1% FPR (RMIA {tpr('rmia', k)}, LiRA offline {tpr('lira-offline', k)}, "
            f"online {tpr('lira-online', k)}{'; the intervals overlap' if overlap else ''}), and its AUC, "
            f"{rmia['auc']:.3f}, is {'above' if rmia['auc'] > max(offline['auc'], online['auc']) else 'below'} "
            f"LiRA's ({offline['auc']:.3f} offline, {online['auc']:.3f} online). "
        )
    tuned = data["rmia_tuned_a"]
    hindsight = data["rmia_k1_tpr_by_a_hindsight"]
    parts.append(
        "RMIA's `a` is tuned as the paper does, by attacking each reference model with the others, and with the "
        "audited model, which was trained without any population example (no audited example's membership is used): "
        f"a = {', '.join(f'{tuned[str(k)]:.1f} at K={k}' for k in KS)}. "
        f"The untuned series keeps the paper's a = 0.3: {', '.join(f'K={k} {tpr(UNTUNED, k)}' for k in KS)}. "
        "The softmax temperature T is tuned with `a` in the same games (rmia's row): T = "
        + ", ".join(f"{t:g} at K={k}" for k, t in data.get("rmia_tuned_temperature", {}).items())
        + f"; the plain softmax (T = 1, `a` tuned) gives {', '.join(f'K={k} {tpr(PLAIN_T, k)}' for k in KS)}. "
        "For one population and gamma, RMIA ranks the audited examples by p(x|theta) / Pr(x), so `a` is the only "
        "thing that moves its ROC curve; with hindsight (the audit's own membership, which no auditor has), K=1 gives "
        + ", ".join(f"{t:.1%} at a = {a}" for a, t in hindsight.items())
        + ". "
    )
    if behind:
        parts.append(
            "Zarifzadeh et al. (2024) report RMIA ahead of LiRA at low FPR with 1 or 2 reference models; here it is "
            f"behind, beyond the intervals, at K={' and '.join(map(str, behind))}. "
        )
    k_max = max(KS)
    parts.append(
        f"K={k_max}: LiRA offline {tpr('lira-offline', k_max)}, online {tpr('lira-online', k_max)}, RMIA "
        f"{tpr('rmia', k_max)}. Online LiRA draws each reference model's training set from the population and the "
        "audited examples together, so an audited example is IN a given model with probability 1/4 (1,000 of 4,000): "
        "at small K most examples have no IN model and fall back to a shifted OUT mean, which is why online LiRA is "
        "the weakest at K=1 and 2. Intervals are 95% Clopper-Pearson over the audited examples, on one seed: they do "
        "not include the spread across training randomness, which a second seed's models would show."
    )
    if not data.get("matches_run_mia", True):
        parts.append(" **The sliced signals did not reproduce `privaudit mia` at K=2: the figures above are suspect.**")
    return "".join(parts)


def run(repeats: int) -> dict:
    """The ``power`` section: TPR@1%FPR per attack and K, training cost per model, and the plot."""
    del repeats  # every number here is a deterministic measurement or a one-off training time
    with torch_threads(THREADS):
        audit = load_audit()
        refs = {online: references(audit, n_models=max(KS), online=online) for online in (False, True)}
        series: dict[str, list[dict]] = {}
        attack_seconds: dict[str, float] = {}
        k2_scores: dict[str, np.ndarray] = {}
        tuned = {k: get_attack("rmia").resolved(signals_with(audit, refs[False], k)) for k in KS}  # (a, T)
        # With hindsight (the audit's own membership, which no auditor has): what each `a` would give at K=1.
        hindsight = {
            a: summary(measure(get_attack("rmia", a=a).score(signals_with(audit, refs[False], 1)), audit.is_member))[
                "tpr_at_1%"
            ]
            for a in (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)
        }
        for name, (attack_name, online) in SERIES.items():
            rows = []
            for k in (0,) if attack_name == "loss" else KS:
                scores, row, seconds = attack(attack_name, signals_with(audit, refs[online], k), audit.is_member)
                rows.append({"k": k, **row})
                if k == 2 and name in ("lira-offline", "lira-online", "rmia"):
                    k2_scores[attack_name] = scores
                attack_seconds[f"{name}, K={k}"] = seconds
            series[name] = rows
        whole, matches = run_mia_at(2, k2_scores)
    cached = refs[False].cached_seconds + refs[True].cached_seconds
    seconds = {"target scoring pass (4,000 texts)": audit.scoring_seconds}
    for online, side in ((False, "offline"), (True, "online")):
        if refs[online].train_seconds:
            seconds[f"one {side} reference model: train + score (mean)"] = float(np.mean(refs[online].train_seconds))
    recorded = refs[False].train_seconds + refs[True].train_seconds
    if len(recorded) == 2 * max(KS):
        seconds[f"all {2 * max(KS)} reference models: train + score (total)"] = float(sum(recorded))
    if cached:
        seconds["one reference model: load + score from the cache (mean)"] = float(np.mean(cached))
    seconds |= {
        "lira-offline, K=8 (attack only)": attack_seconds["lira-offline, K=8"],
        "lira-online, K=8 (attack only)": attack_seconds["lira-online, K=8"],
        "rmia, K=8 (attack only)": attack_seconds["rmia, K=8"],
    }
    seconds |= whole
    data = {
        "seconds": seconds,
        "series": series,
        "ks": [0, *KS],
        "n_members": int(audit.is_member.sum()),
        "n_non_members": int((~audit.is_member).sum()),
        "models_trained_this_run": refs[False].trained + refs[True].trained,
        "matches_run_mia": matches,
        "rmia_tuned_a": {str(k): a for k, (a, _) in tuned.items()},
        "rmia_tuned_temperature": {str(k): t for k, (_, t) in tuned.items()},
        "rmia_k1_tpr_by_a_hindsight": {str(a): t for a, t in hindsight.items()},
        "torch_threads": THREADS,
        "attack_seconds": attack_seconds,
        "plot": str(PLOT.relative_to(ROOT)),
    }
    plot(data, PLOT)
    data["notes"] = _notes(data)
    return data

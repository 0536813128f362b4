"""ModIvA's study in paper mode: what Parikh, Dupuy, Gupta (ACL 2022, "Canary Extraction in Natural Language
Understanding Models") measured, the rate of exact recovery over models.

The design, fixed before any run:

- **One secret per model, N models per configuration** (``MODELS``, at least 10 for a recorded run). Model ``i`` of
  every configuration is trained with seed ``i`` and so plants the same secret with the same label: the
  configurations are compared on the same secrets (a paired design).
- **A configuration** is an architecture (:data:`ARCHES`) x a defence (:data:`DEFENCES`) x a repeat count
  (:data:`REPEATS`). Each model is trained with ``privaudit train``'s own job (:class:`privaudit.training.job.TrainJob`,
  the flags of the command) on the fixture's 1,000 members plus ``repeats`` copies of its one secret
  ``"my pin code is {d} {d} {d} {d}"``, and one never-inserted control secret.
- **The measure**: ModIvA's exact recovery (``privaudit canary`` with its defaults: within the exact budget its guess is
  the lowest-loss code of all 10,000, its Gumbel-softmax search's own guess reported beside), as a rate over the N
  models with a 95% Clopper-Pearson interval (:func:`privaudit.stats.metrics.clopper_pearson`). Controls give the
  rate on secrets the model never saw.
- **The comparison with the paper's 0.5** is :data:`PAPER_COMPARISON`, named here before the run: the paper's best
  configuration is its undefended recurrent model with the most repeats.

Architectures, defences and the canary label are training options passed to the job as they are. Where this
checkout's job lacks one (``--arch``, ``--char-embeddings``, ``--early-stopping``, ``--validation``: the recurrent
and convolutional classifiers of issue 19), the configuration's row is skipped with a note naming the missing flag,
never approximated by another model. ``MODIVA_PAPER_MODELS``, ``MODIVA_PAPER_ARCHES``, ``MODIVA_PAPER_DEFENCES``
(names, comma-separated), ``MODIVA_PAPER_REPEATS`` and ``MODIVA_PAPER_LABEL`` (``new``, the default: a label of the
secret's own, as the paper gave each secret; ``random``: an existing label drawn per model) and ``MODIVA_PAPER_EPOCHS``
(every architecture's epochs) scale or change the run; a run that leaves out part of the design is marked partial, and
the rows it left out are named. ``MODIVA_PAPER_PLAN=1`` runs :data:`RUN_ORDER` (the first recorded run's rows) in place
of the grid, ``MODIVA_PAPER_PLAN=cnn`` :data:`RUN_ORDER_CNN` (the second's), ``bert`` :data:`RUN_ORDER_BERT` (the third's); ``python -m benchmarks.modiva_paper --shard I/K`` trains worker I of K's share of the models into the
cache (deterministic: a model depends only on its options and seed), and ``MODIVA_PAPER_CACHED_ONLY=1`` then writes
the section from the cache alone, leaving out (and naming) any configuration not all of whose models finished. Rows that do not apply (character embeddings on a transformer) are shown as such and
do not make a run partial.

One secret per model has a consequence the pooled study does not: the template's words alone tell the secret's label
(no other text of the template is in the data), so the model needs none of the digits to fit it, and the loss ranks
the true code first only once training goes on past fitting the label. Smoke runs on the tiny BERT (10 repeats, 2
models a row, label drawn from the data's): at the fixture's 30 epochs the undefended secrets ranked 5,248th and
113th of 10,000 by loss (under DP ε 8: 692nd and 55th), at 100 epochs 8th and 5th; none first, so none recovered.
Issue 19 saw the true code ranked first for 4 of 4 single secrets with a new label after 100 epochs. The recipes'
epochs therefore decide much of what is measured; they are fixed here, before the run, and recorded with the
results. Models and audits are cached under
``.cache/bench/modiva-paper``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.power import CACHE, DATA, ROOT, THREADS, torch_threads

TEMPLATE = "my pin code is {d} {d} {d} {d}"
ARCHES = ("bilstm", "cnn", "bert")
REPEATS = (10, 100)
MODELS = 10  # per configuration: the issue asks for N >= 10
MIN_MODELS = 10
CONTROLS = 1  # never-inserted secrets per model: the recovery rate on secrets the model never saw
PATIENCE = 3  # early stopping: epochs without a lower validation loss
DP_EPSILON = 8.0
STUDY = CACHE / "modiva-paper"
LABEL = "new"  # --canary-label new: each secret a label of its own, as in the paper
NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class PaperComparison:
    """The configuration whose rate is set against the paper's, named before the run."""

    arch: str
    defence: str
    repeats: int
    paper_rate: float = 0.5


# The paper's headline, about 0.5, is its best configuration: an undefended recurrent NLU classifier. The most
# repeats of the design is the most exposed secret; named here, before any run, and not changed after one.
PAPER_COMPARISON = PaperComparison(arch="bilstm", defence="no defence", repeats=100)

# The recorded run (05:15 UTC, 5 December 2026), named before it: the rows it trains, most important first, on a CPU
# shared with other jobs and a time limit of about an hour. Timed before the choice, one model each (train + ModIvA
# audit, 1 thread, 2 such processes at a load of ~10 on 2 cores): the BiLSTM at its recipe below 105 s + 16 s, the
# tiny BERT at its recipe 133 s + 8 s. So the full grid's 360 models (~12 h) cannot run; the run trains, in this
# order, and keeps whatever configurations finish all their N models (MODIVA_PAPER_CACHED_ONLY): the named
# comparison; every defence on the BiLSTM at the same 100 repeats (the defence claims); the tiny BERT at 100 repeats
# for contrast; then the 10-repeat rows. The CNN rows are left out of this run.
_DP_NAME = f"DP ε {8.0:g}"
RUN_ORDER: tuple[tuple[str, str, int], ...] = (
    ("bilstm", "no defence", 100),
    ("bilstm", "dropout 0.5", 100),
    ("bilstm", "early stopping", 100),
    ("bilstm", "character embeddings", 100),
    ("bilstm", _DP_NAME, 100),
    ("bilstm", "all combined", 100),
    ("bert", "no defence", 100),
    ("bilstm", "no defence", 10),
    ("bilstm", "dropout 0.5", 10),
    ("bilstm", "early stopping", 10),
    ("bilstm", "character embeddings", 10),
    ("bilstm", _DP_NAME, 10),
    ("bilstm", "all combined", 10),
    ("bert", "no defence", 10),
)


# The second recorded run (07:24 UTC, 5 December 2026, session 6), named before it: the CNN rows the first left out,
# every defence at 100 repeats then at 10, in the grid's defence order; one worker, one thread, beside other work.
# Models train into the same cache; the section is rewritten from the cache (MODIVA_PAPER_CACHED_ONLY), so rows whose
# N models did not all finish are left out and named. The tiny BERT's defence rows remain unrun (~110 s a model).
RUN_ORDER_CNN: tuple[tuple[str, str, int], ...] = tuple(
    ("cnn", name, repeats)
    for repeats in (100, 10)
    for name in ("no defence", "dropout 0.5", "early stopping", "character embeddings", _DP_NAME, "all combined")
)

# The third (07:28 UTC, same session), named before it and run beside the second by a second worker: the tiny BERT's
# rows the first left out, the no-defence row at 10 repeats first (the contrast row at both repeat counts), then its
# defences at 100 repeats and at 10 (character embeddings do not apply to it). About 110 s a model here, so the
# session's time limit, not the design, decides how many finish; unfinished rows are left out and named.
RUN_ORDER_BERT: tuple[tuple[str, str, int], ...] = (("bert", "no defence", 10),) + tuple(
    ("bert", name, repeats)
    for repeats in (100, 10)
    for name in ("dropout 0.5", "early stopping", _DP_NAME, "all combined")
)


@dataclass(frozen=True)
class Defence:
    """A defence, as ``privaudit train`` flags (TrainJob fields) on top of the architecture's recipe.

    ``dropout`` is applied through the job's ``dropout`` flag where it has one, and for the BERT through its
    ``Architecture`` otherwise (this checkout's only way to set a BERT's dropout).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    dropout: float | None = None


_EARLY = {"early_stopping": PATIENCE, "validation": DATA / "non_members.jsonl"}
_DP = {"dp": True, "target_epsilon": DP_EPSILON}
DEFENCES = (
    Defence("no defence"),
    Defence("dropout 0.5", dropout=0.5),
    Defence("early stopping", _EARLY),
    Defence("character embeddings", {"char_embeddings": True}),
    Defence(f"DP ε {DP_EPSILON:g}", _DP),
    Defence("all combined", {**_EARLY, "char_embeddings": True, **_DP}, dropout=0.5),
)


@dataclass(frozen=True)
class Recipe:
    """An architecture's training recipe: TrainJob fields, and the DP recipe's changes to them."""

    options: Mapping[str, Any]
    dp_options: Mapping[str, Any] = field(default_factory=dict)
    word_model: bool = True  # a word-embedding model: character embeddings apply


# Small and short, so that N models a configuration train in minutes on a CPU. The BERT is the fixture's
# (fixtures/make_models.py: 2 layers of width 128, 30 epochs; DP: Poisson batch 256, lr 1e-2) with no dropout; the
# word models are the (100-d embeddings, 100 units or filters, privaudit's defaults for --arch). Fixed for the
# recorded run before it, from one timed model and plausibility only (no recovery result was looked at): the BiLSTM,
# 20 epochs of batch 32 at lr 1e-3 (Adam), fits the training data (100% train accuracy) in ~2 minutes a model here;
# 30 epochs (a helper's 20-of-20 BiLSTM run) would not leave time for the defence rows. DP ε 8 keeps the fixture's
# DP recipe (Poisson batch 256, lr 1e-2, same epochs). The CNN's recipe is untimed and not run.
RECIPES: dict[str, Recipe] = {
    "bilstm": Recipe({"arch": "bilstm", "epochs": 20, "batch_size": 32, "lr": 1e-3}, {"batch_size": 256, "lr": 1e-2}),
    "cnn": Recipe({"arch": "cnn", "epochs": 20, "batch_size": 32, "lr": 1e-3}, {"batch_size": 256, "lr": 1e-2}),
    "bert": Recipe({"epochs": 30, "batch_size": 64, "lr": 1e-3}, {"batch_size": 256, "lr": 1e-2}, word_model=False),
}
# What a missing TrainJob field is on the command line, for the skip note.
FLAGS = {
    "arch": "--arch",
    "char_embeddings": "--char-embeddings",
    "early_stopping": "--early-stopping",
    "validation": "--validation",
    "dropout": "--dropout",
}


@dataclass(frozen=True)
class Config:
    """One row of the study: an architecture, a defence and a repeat count."""

    arch: str
    defence: Defence
    repeats: int

    @property
    def name(self) -> str:
        return f"{self.arch}, {self.defence.name}, {self.repeats} repeats"


def grid(
    arches: Sequence[str] = ARCHES, defences: Sequence[Defence] = DEFENCES, repeats: Sequence[int] = REPEATS
) -> list[Config]:
    """Every configuration of the design, architecture-major, in the order the table shows them."""
    return [Config(a, d, k) for a in arches for d in defences for k in repeats]


def train_options(config: Config, fields: Iterable[str], *, label: str = LABEL) -> tuple[dict, str | None]:
    """The TrainJob keywords of one model of ``config`` (less data, out, seed), or why it cannot be trained here.

    Args:
        config: the configuration.
        fields: the TrainJob fields this checkout has.
        label: the canary label mode, ``"random"`` or ``"new"``.

    Returns:
        ``(options, None)``, or ``({}, note)`` when the configuration does not apply to the architecture or needs a
        flag the job lacks.
    """
    from privaudit.training.model import Architecture

    fields = set(fields)
    recipe = RECIPES[config.arch]
    defence = config.defence
    options = dict(defence.options)
    if "char_embeddings" in options and not recipe.word_model:
        if defence.name == "character embeddings":
            return {}, f"{NOT_APPLICABLE}: --char-embeddings is for word models, not {config.arch}"
        del options["char_embeddings"]  # "all combined" for a transformer: every defence that applies to it
    wanted = {**recipe.options, **(recipe.dp_options if options.get("dp") else {}), **options}
    if defence.dropout is not None:
        if "dropout" in fields or config.arch != "bert":
            wanted["dropout"] = defence.dropout
        else:
            wanted["architecture"] = Architecture(dropout=defence.dropout)
    if config.arch == "bert" and "architecture" not in wanted and "dropout" not in wanted:
        wanted["architecture"] = Architecture(dropout=0.0)  # no defence: the fixture's BERT, dropout off
    missing = [key for key in wanted if key not in fields]
    if missing:
        return {}, "needs " + ", ".join(FLAGS.get(key, key) for key in missing) + " (privaudit train; issue 19)"
    wanted.update(
        canary=TEMPLATE,
        canary_label=label,
        canary_count=1,
        canary_repeats=config.repeats,
        canary_controls=CONTROLS,
        max_length=32,
        device="cpu",
    )
    return wanted, None


def rate(hits: int, n: int) -> dict:
    """A recovery rate over ``n`` models with its 95% Clopper-Pearson interval (``None`` for no models)."""
    from privaudit.stats.metrics import clopper_pearson

    if n == 0:
        return {"hits": 0, "n": 0, "rate": None, "low": None, "high": None}
    low, high = clopper_pearson(hits, n)
    return {"hits": hits, "n": n, "rate": hits / n, "low": low, "high": high}


def summarise(config: Config, models: Sequence[dict]) -> dict:
    """One measured row from its models' audits (see :func:`audit_model` for a model's fields)."""
    controls = [c for m in models for c in m["controls"]]
    epsilons = [m["epsilon"] for m in models if m["epsilon"] is not None]
    return {
        "arch": config.arch,
        "defence": config.defence.name,
        "repeats": config.repeats,
        "status": "measured",
        "note": None,
        "recovered": rate(sum(m["recovered"] for m in models), len(models)),
        "search_recovered": rate(sum(m["search_recovered"] for m in models), len(models)),
        "controls_recovered": rate(sum(c["recovered"] for c in controls), len(controls)),
        "median_exposure_rank": float(np.median([m["exposure_rank"] for m in models])),
        "train_accuracy": float(np.mean([m["train_accuracy"] for m in models])),
        "epsilon": float(np.mean(epsilons)) if epsilons else None,
    }


def skipped(config: Config, note: str) -> dict:
    """A row not measured, with the reason: ``not applicable`` to the architecture, or ``skipped`` (a missing flag)."""
    return {
        "arch": config.arch,
        "defence": config.defence.name,
        "repeats": config.repeats,
        "status": NOT_APPLICABLE if note.startswith(NOT_APPLICABLE) else "skipped",
        "note": note,
    }


def left_out(rows: Sequence[dict], design: Sequence[Config] | None = None) -> list[str]:
    """The configurations of the design (by default the full grid) that ``rows`` do not hold, by architecture."""
    have = {(r["arch"], r["defence"], r["repeats"]) for r in rows}
    missing: dict[str, list[str]] = {}
    for c in grid() if design is None else design:
        applies = RECIPES[c.arch].word_model or c.defence.name != "character embeddings"
        if applies and (c.arch, c.defence.name, c.repeats) not in have:
            missing.setdefault(c.arch, []).append(f"{c.defence.name} ({c.repeats})")
    every = {
        a: len([c for c in grid() if c.arch == a and (RECIPES[a].word_model or "character" not in c.defence.name)])
        for a in ARCHES
    }
    return [f"{a}: every row" if len(m) == every.get(a) else f"{a}: " + ", ".join(m) for a, m in missing.items()]


def verdicts(rows: Sequence[dict], comparison: PaperComparison = PAPER_COMPARISON) -> list[str]:
    """What the rows say about the paper's claims, read from them; ``[]`` when the named row was not measured.

    The claims (issue 19): the named configuration's interval includes the paper's rate or lies above it; every
    defence lowers the undefended rate (same architecture and repeats); all defences combined recover nothing.
    """
    by_key = {(r["arch"], r["defence"], r["repeats"]): r for r in rows if r["status"] == "measured"}
    named = by_key.get((comparison.arch, comparison.defence, comparison.repeats))
    if named is None:
        return []
    found = named["recovered"]
    reaches = found["high"] >= comparison.paper_rate
    lines = [
        f"Named before the run: {comparison.arch}, {comparison.defence}, {comparison.repeats} repeats: "
        f"{found['hits']}/{found['n']} = {found['rate']:.2f} [{found['low']:.2f}, {found['high']:.2f}]; the paper's "
        f"{comparison.paper_rate:g} is {'inside or below' if reaches else 'above'} the interval: "
        f"{'reproduced' if reaches else 'not reproduced'}."
    ]
    order = {(c.arch, c.defence.name, c.repeats): i for i, c in enumerate(grid())}
    for (arch, defence, repeats), row in sorted(by_key.items(), key=lambda item: order[item[0]]):
        base = by_key.get((arch, "no defence", repeats))
        if defence == "no defence" or base is None:
            continue
        lower = row["recovered"]["rate"] < base["recovered"]["rate"]
        zero = row["recovered"]["hits"] == 0
        claim = "gives 0" if defence == "all combined" else "lowers the rate"
        holds = zero if defence == "all combined" else lower
        lines.append(
            f"{arch}, {repeats} repeats: {defence} {row['recovered']['rate']:.2f} against no defence "
            f"{base['recovered']['rate']:.2f}: {claim}: {'yes' if holds else 'no'}."
        )
    dp = [r for r in by_key.values() if r["epsilon"] is not None]
    lines += [
        f"{r['arch']}, {r['defence']}, {r['repeats']} repeats: ε {r['epsilon']:.2f} is per example; the secret's "
        f"{r['repeats']} copies are covered only as a group (about {r['repeats']} x ε)."
        for r in dp
    ]
    return lines + _summaries(by_key, comparison)


def _summaries(by_key: Mapping[tuple, dict], comparison: PaperComparison) -> list[str]:
    """Per architecture and repeat count, how many defences lower the rate; and the transformer beside the named
    architecture at each repeat count both have an undefended row for."""
    lines = []
    for arch, repeats in sorted({(a, k) for a, _, k in by_key}):
        base = by_key.get((arch, "no defence", repeats))
        others = [r for (a, d, k), r in by_key.items() if (a, k) == (arch, repeats) and d != "no defence"]
        if base is None or not others:
            continue
        lower = [r["defence"] for r in others if r["recovered"]["rate"] < base["recovered"]["rate"]]
        kept = [r["defence"] for r in others if r["defence"] not in lower]
        lines.append(
            f"{arch}, {repeats} repeats: {len(lower)} of {len(others)} defences measured lower the rate"
            + (f" (not: {', '.join(kept)})" if kept else "")
            + "."
        )
    for (arch, defence, repeats), row in sorted(by_key.items()):
        named = by_key.get((comparison.arch, "no defence", repeats))
        if arch != "bert" or defence != "no defence" or named is None or comparison.arch == "bert":
            continue
        lines.append(
            f"Beside it, the tiny BERT, no defence, {repeats} repeats: {row['recovered']['hits']}/"
            f"{row['recovered']['n']} recovered (median loss rank {row['median_exposure_rank']:.0f}) against the "
            f"{comparison.arch}'s {named['recovered']['hits']}/{named['recovered']['n']} (median loss rank "
            f"{named['median_exposure_rank']:.0f})."
        )
    return lines


def _key(options: Mapping[str, Any], label: str) -> str:
    """The cache key of a configuration's models: its options and label, a path inside the checkout relative to it
    (the same model in another clone or worktree is the same entry)."""
    plain = json.dumps({k: _plain(v) for k, v in sorted(options.items())} | {"label": label}, sort_keys=True)
    return hashlib.sha256(plain.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path) and value.is_absolute() and value.is_relative_to(ROOT):
        return value.relative_to(ROOT).as_posix()
    return str(value)


def _where(options: Mapping[str, Any], seed: int, label: str):
    return STUDY / _key(options, label) / f"model-{seed}"


def is_cached(options: Mapping[str, Any], seed: int, label: str) -> bool:
    """Whether model ``seed`` of these options has been trained and audited (its audit is cached)."""
    where = _where(options, seed, label)
    return where.with_name(where.name + ".audit.json").is_file()


def audit_model(options: Mapping[str, Any], seed: int, label: str) -> dict:
    """Train (or find cached) model ``seed`` of a configuration and audit its secret: the model's fields.

    Returns:
        ``recovered`` and ``search_recovered`` (ModIvA's guess and its search's own), ``exposure_rank``, ``label``,
        ``train_accuracy``, ``epsilon``, ``controls`` (each ``{"recovered"}``), ``train_seconds``, ``audit_seconds``.
    """
    from privaudit.canary.run import CanaryRequest, run_canary
    from privaudit.training.job import TrainJob, run_train

    where = _where(options, seed, label)
    cached = where.with_name(where.name + ".audit.json")
    if cached.is_file():
        return json.loads(cached.read_text())
    canaries = where.with_name(where.name + ".canaries.jsonl")
    shutil.rmtree(where, ignore_errors=True)
    where.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run_train(TrainJob(data=DATA / "members.jsonl", out=where, seed=seed, canaries_out=canaries, **options))
    trained = time.perf_counter() - start
    recipe = json.loads((where / "privaudit.json").read_text())
    start = time.perf_counter()
    result = run_canary(CanaryRequest(model_dir=where, canaries=canaries, seed=seed))
    (secret,) = [r for r in result.rows if r.canary.inserted]
    found = {
        "recovered": bool(secret.extraction.recovered),
        "search_recovered": bool(secret.extraction.search_recovered),
        "guess_method": secret.extraction.guess_method,
        "exposure_rank": secret.exposure_rank,
        "label": secret.canary.label,
        "train_accuracy": recipe["train_accuracy"],
        "epsilon": (recipe.get("dp") or {}).get("epsilon"),
        "controls": [{"recovered": bool(r.extraction.recovered)} for r in result.rows if not r.canary.inserted],
        "train_seconds": trained,
        "audit_seconds": time.perf_counter() - start,
    }
    cached.write_text(json.dumps(found, indent=1) + "\n")
    return found


def _pick(env: str, names: Sequence, convert=str) -> list:
    wanted = os.environ.get(env)
    if not wanted:
        return list(names)
    return [convert(x.strip()) for x in wanted.split(",") if x.strip()]


def planned(order: Sequence[tuple[str, str, int]] = RUN_ORDER) -> list[Config]:
    """The configurations of :data:`RUN_ORDER`, in its order."""
    by_key = {(c.arch, c.defence.name, c.repeats): c for c in grid()}
    return [by_key[key] for key in order]


def _settings() -> tuple[int, str, list[Config], str | None]:
    """The run's models a configuration, canary label, configurations and epochs override, from the environment."""
    n = int(os.environ.get("MODIVA_PAPER_MODELS", MODELS))
    if n < 1:
        raise SystemExit(f"MODIVA_PAPER_MODELS must be at least 1, not {n}")
    label = os.environ.get("MODIVA_PAPER_LABEL", LABEL)
    plan = os.environ.get("MODIVA_PAPER_PLAN")
    if plan:
        configs = planned({"cnn": RUN_ORDER_CNN, "bert": RUN_ORDER_BERT}.get(plan, RUN_ORDER))
    else:
        names = _pick("MODIVA_PAPER_DEFENCES", [d.name for d in DEFENCES])
        defences = [d for d in DEFENCES if d.name in names]
        configs = grid(_pick("MODIVA_PAPER_ARCHES", ARCHES), defences, _pick("MODIVA_PAPER_REPEATS", REPEATS, int))
    return n, label, configs, os.environ.get("MODIVA_PAPER_EPOCHS")


def _options(config: Config, label: str, epochs: str | None) -> tuple[dict, str | None]:
    from privaudit.training.job import TrainJob

    options, note = train_options(config, {f.name for f in dataclasses.fields(TrainJob)}, label=label)
    if note is None and epochs:
        options["epochs"] = int(epochs)
    return options, note


def shard_jobs(configs: Sequence[Config], n: int, shard: int, shards: int) -> list[tuple[Config, int]]:
    """Worker ``shard`` of ``shards``'s models: every ``shards``-th (configuration, seed) pair in run order, so the
    workers finish the configurations in order. Each model depends only on its options and seed, so which process
    trains it does not change it."""
    pairs = [(config, seed) for config in configs for seed in range(n)]
    return pairs[shard::shards]


def fill(shard: int, shards: int) -> None:
    """Train and audit one worker's share of the run's models into the cache (``python -m benchmarks.modiva_paper
    --shard I/K``); the section is then written from the cache (``MODIVA_PAPER_CACHED_ONLY=1``)."""
    n, label, configs, epochs = _settings()
    with torch_threads(int(os.environ.get("BENCH_THREADS", 1))):
        for config, seed in shard_jobs(configs, n, shard, shards):
            options, note = _options(config, label, epochs)
            if note is None:
                found = audit_model(options, seed, label)
                took = found["train_seconds"] + found["audit_seconds"]
                print(f"shard {shard}/{shards}: {config.name}: model {seed} ({took:.0f} s)", flush=True)


def run(repeats: int) -> dict:
    """The ``modiva-paper`` section (``repeats``, the timing repeats of other sections, is not used).

    With ``MODIVA_PAPER_CACHED_ONLY`` set, nothing is trained: a configuration whose N models are not all cached is
    left out (named in the section), so a run stopped by its time limit is recorded as exactly what it measured.
    """
    n, label, configs, epochs = _settings()
    cached_only = bool(os.environ.get("MODIVA_PAPER_CACHED_ONLY"))
    configs = sorted(configs, key=grid().index)  # the table's order
    rows, seconds = [], {}
    with torch_threads(int(os.environ.get("BENCH_THREADS", THREADS))):
        for config in configs:
            options, note = _options(config, label, epochs)
            if note is not None:
                rows.append(skipped(config, note))
                continue
            if cached_only and not all(is_cached(options, seed, label) for seed in range(n)):
                continue
            models = []
            for seed in range(n):
                models.append(audit_model(options, seed, label))
                print(f"modiva-paper: {config.name}: model {seed + 1}/{n}", file=sys.stderr, flush=True)
            # Each model's own train + audit time, as recorded when it was trained (a cached model costs nothing now).
            seconds[config.name] = sum(m["train_seconds"] + m["audit_seconds"] for m in models)
            rows.append(summarise(config, models) | {"models": models})
    full = n >= MIN_MODELS and len(rows) == len(grid()) and all(r["status"] != "skipped" for r in rows)
    return {
        "seconds": seconds,
        "rows": rows,
        "models_per_configuration": n,
        "canary_label": label,
        "full": full and not epochs,
        "recipes": {arch: {**r.options, "dp": dict(r.dp_options)} for arch, r in RECIPES.items()},
        "epochs_override": int(epochs) if epochs else None,
        "paper_comparison": dataclasses.asdict(PAPER_COMPARISON),
        "verdicts": verdicts(rows),
        "left_out": left_out(rows),
        "what": (
            f"One secret per model ('{TEMPLATE}', label '{label}', plus {CONTROLS} never-inserted control), {n} models "
            "a configuration (model i of each plants the same secret), trained with privaudit train's job on the "
            "fixture's 1,000 members; ModIvA at its defaults (exhaustive guess within its 1e5 budget, its search's "
            "own guess beside); rates over models with 95% Clopper-Pearson intervals."
        ),
    }


def markdown(data: dict) -> list[str]:
    """The BENCHMARKS.md section, from the stored results."""
    lines = [
        f"{data['what']} The models were trained in three runs on 5 December 2026, each run's rows named before it "
        "(`RUN_ORDER`: the BiLSTM rows and the tiny BERT without defence at 100 repeats; `RUN_ORDER_CNN`; "
        "`RUN_ORDER_BERT`, in `benchmarks/modiva_paper.py`); the section is written from their cache, with each "
        "model's own training and audit time.\n"
    ]
    if not data["full"]:
        n = data.get("models_per_configuration")
        lines.append(
            f"**Partial run**: {n} models a configuration; not the whole paper-mode grid."
            + (" Not run: " + "; ".join(data["left_out"]) + "." if data.get("left_out") else "")
            + (f" Epochs overridden: {data['epochs_override']}." if data.get("epochs_override") else "")
            + "\n"
        )
    lines += [
        "| architecture | defence | repeats | ModIvA exact [95% CI] | its search alone [95% CI] | controls "
        "recovered | median loss rank | train acc | ε |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(found: dict) -> str:
        if found["rate"] is None:
            return "-"
        return f"{found['hits']}/{found['n']} {found['rate']:.2f} [{found['low']:.2f}, {found['high']:.2f}]"

    for r in data["rows"]:
        if r["status"] != "measured":
            note = r["note"] if r["status"] == NOT_APPLICABLE else f"skipped: {r['note']}"
            lines.append(f"| {r['arch']} | {r['defence']} | {r['repeats']} | {note} | | | | | |")
            continue
        eps = "" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        lines.append(
            f"| {r['arch']} | {r['defence']} | {r['repeats']} | {cell(r['recovered'])} "
            f"| {cell(r['search_recovered'])} | {cell(r['controls_recovered'])} | {r['median_exposure_rank']:.0f} "
            f"| {r['train_accuracy']:.1%} | {eps} |"
        )
    if data["verdicts"]:
        lines += ["", *(f"- {line}" for line in data["verdicts"])]
    return lines + [""]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=fill.__doc__)
    parser.add_argument("--shard", required=True, help="I/K: this worker's index I (from 0) of K")
    index, count = (int(x) for x in parser.parse_args().shard.split("/"))
    fill(index, count)

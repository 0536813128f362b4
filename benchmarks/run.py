"""``make bench``: measure privaudit against its cost floor, side by side in one run, and rewrite BENCHMARKS.md.

Every figure is a ratio or a pair measured in the same process on the same machine, each timing the best of a few
repeats, so that load from elsewhere inflates both sides alike. Sections:

- dp:       DP-SGD training time over non-DP training time, same model, data and batch size, per Opacus mode;
- mia:      ``privaudit mia --attack loss`` (in process) over a bare batched forward pass of the same texts;
- canary:   candidates scored per second for a 4-digit space, against a bare batched forward pass;
- modiva:   wall time of one ModIvA extraction on the fixture;
- lira:     ``mia --attack lira-offline`` with 4 cached reference models over bare forward passes of the 5 models;
- power:    attack power per reference model, and the time of each reference-model attack (benchmarks/power.py);
- peers:    IBM ART's membership attacks on the same target outputs (benchmarks/peers.py);
- minilm:   a real pretrained encoder, fine-tuned with and without DP, and audited (benchmarks/minilm.py);
- endpoint: ``mia --endpoint`` throughput (texts/s) against a bare httpx client's, same KServe server (tests/servers).

- executor: four reference models, ``--executor local`` (as it was and as it is) against ``--executor ray``
  (benchmarks/executor.py).
- utility:  MiniLM at epsilon 8 training all parameters, the head, the last 2 layers or LoRA (benchmarks/utility.py);
- sweep:    ``privaudit sweep`` of the fixture recipe over inf,16,8,4,2,1 (benchmarks/sweep.py);
- tightness: the one-run audits against the claimed epsilon at 1, 2, 4, 8 (benchmarks/tightness.py);
- user-level: record-level against user-level TPR at 1% FPR per aggregation, group-privacy epsilon (benchmarks/users.py);
- outside-dp: a DP claim checked on the outside pipeline (plain Opacus), data canaries and the Opacus hook in one run,
  honest and four broken pipelines (benchmarks/outside_dp.py);
- modiva-study: ModIvA's exact recovery against repeats, dropout and DP, beside the exhaustive rank
  (benchmarks/modiva_study.py; ``make bench-modiva``, not part of the default run).
- modiva-paper: the study in paper mode: exact recovery over N models of one secret each, per architecture x defence
  x repeats, with Clopper-Pearson intervals (benchmarks/modiva_paper.py; ``make bench-modiva-paper``, on request).

Run ``python benchmarks/run.py [--only dp,mia,...] [--out BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "fixtures" / "data"
MODELS = ROOT / "fixtures" / "models"
RESULTS = ROOT / "benchmarks" / "results"


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs, in seconds: the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _texts(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def bare_forward(target, texts: list[str], batch_size: int) -> np.ndarray:
    """The floor: tokenize each batch (padded to its longest) and run the model, no sorting, no bookkeeping."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = target.tokenizer(texts[i : i + batch_size], padding=True, return_tensors="pt")
            out.append(target.model(**batch).logits)
    return torch.cat(out).numpy()


def bench_dp(repeats: int) -> dict:
    """DP-SGD over non-DP training time for one epoch of 2,048 examples, tiny BERT, batch 64."""
    from privaudit.training.model import Architecture
    from privaudit.training.train import DPConfig, TrainConfig, train_classifier

    texts, labels = _texts(DATA / "population.jsonl")
    m_texts, m_labels = _texts(DATA / "members.jsonl")
    texts, labels = (texts + m_texts)[:2048], (labels + m_labels)[:2048]
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    config = TrainConfig(epochs=1, batch_size=64, lr=1e-3, max_length=32, seed=0, architecture=Architecture())

    modes: dict[str, tuple[DPConfig | None, int]] = {"non-DP": (None, 0)}
    for mode in ("hooks", "functorch", "ghost", "bk"):
        modes[f"DP-SGD ({mode})"] = (DPConfig(delta=1e-5, noise_multiplier=1.0, grad_sample_mode=mode), 0)
    # White-box gradient canaries (privaudit/training/canary_insertion.py), as the f-DP audit uses them.
    modes["DP-SGD (bk) + 5,000 gradient canaries"] = (modes["DP-SGD (bk)"][0], 5000)
    # Interleaved rounds, best of each: load from elsewhere falls on every mode alike.
    rows = dict.fromkeys(modes, float("inf"))
    for _ in range(repeats):
        for name, (dp, canaries) in modes.items():
            trained = train_classifier(
                texts=texts, labels=y, label_names=names, config=config, dp=dp, gradient_canaries=canaries
            )
            rows[name] = min(rows[name], trained.seconds)
    return {"seconds": rows, "baseline": "non-DP"}


def bench_mia(repeats: int) -> dict:
    """Whole in-process ``privaudit mia --attack loss`` over a bare batched forward pass of the same texts."""
    from benchmarks.power import fixture_request
    from privaudit.mia.run import run_mia
    from privaudit.target import Target

    request = fixture_request(attacks="loss")
    texts = _texts(DATA / "members.jsonl")[0] + _texts(DATA / "non_members.jsonl")[0]
    target = Target.load(MODELS / "intent-tiny")
    torch.set_num_threads(torch.get_num_threads())

    def floor() -> None:
        Target.load(MODELS / "intent-tiny")
        bare_forward(target, texts, 128)

    bare = best_of(floor, repeats)
    whole = best_of(lambda: run_mia(request), repeats)
    forward_only = best_of(lambda: bare_forward(target, texts, 128), repeats)
    scorer = best_of(lambda: target.logits(texts, batch_size=128), repeats)
    return {
        "seconds": {
            "bare forward pass (load + tokenize + forward)": bare,
            "privaudit mia --attack loss (load, read, score, attack, metrics)": whole,
            "bare forward pass only": forward_only,
            "privaudit's scorer only (Target.logits)": scorer,
        },
        "n_texts": len(texts),
    }


LIRA_MODELS = 4


def bench_lira(repeats: int) -> dict:
    """``privaudit mia --attack lira-offline --reference-models 4`` with its models cached (scoring only, no training)
    over the floor: load the target and the 4 reference models and run each over the audited texts, bare."""
    from benchmarks import power
    from privaudit.mia.run import run_mia
    from privaudit.target import Target

    # The models power trains (or finds in its cache): model i is the same at every K.
    refs = power.references(power.load_audit(), n_models=LIRA_MODELS, online=False)
    dirs = sorted(power.REFERENCE_CACHE.glob(f"*/*/model-[0-{LIRA_MODELS - 1}]"))
    request = power.fixture_request(
        population=DATA / "population.jsonl",
        attacks="lira-offline",
        reference_models=LIRA_MODELS,
        seed=power.SEED,
        cache_dir=power.REFERENCE_CACHE,
    )
    texts = _texts(DATA / "members.jsonl")[0] + _texts(DATA / "non_members.jsonl")[0]

    def floor() -> None:
        for model in [MODELS / "intent-tiny", *dirs[:LIRA_MODELS]]:
            bare_forward(Target.load(model), texts, 128)

    bare = best_of(floor, repeats)
    whole = best_of(lambda: run_mia(request), repeats)
    return {
        "seconds": {
            f"bare forward passes: target + {LIRA_MODELS} reference models (load + tokenize + forward)": bare,
            f"privaudit mia --attack lira-offline --reference-models {LIRA_MODELS}, models cached": whole,
        },
        "n_texts": len(texts),
        "reference_models_trained_this_run": refs.trained,
    }


def bench_canary(repeats: int) -> dict:
    """Candidates per second of exposure enumeration (1e4 candidates) against a bare batched forward pass."""
    from privaudit.canary.canaries import read_canaries
    from privaudit.canary.exposure import candidate_log_probs, candidates
    from privaudit.target import Target

    target = Target.load(MODELS / "intent-tiny")
    canary = next(c for c in read_canaries(MODELS / "intent-tiny.canaries.jsonl") if c.kind == "exposure")
    texts, space = candidates(canary)
    rng = np.random.default_rng(0)
    enum = best_of(lambda: candidate_log_probs(target, canary, sample=None, rng=rng, batch_size=512), repeats)
    bare = best_of(lambda: bare_forward(target, texts, 512), repeats)
    return {"seconds": {"bare forward pass": bare, "privaudit exposure enumeration": enum}, "candidates": space}


def bench_modiva(repeats: int) -> dict:
    """Wall time of one ModIvA extraction (default settings) on the fixture."""
    from privaudit.canary.canaries import read_canaries
    from privaudit.canary.modiva import ModivaConfig, extract
    from privaudit.target import Target

    target = Target.load(MODELS / "intent-tiny")
    canary = next(c for c in read_canaries(MODELS / "intent-tiny.canaries.jsonl") if c.kind == "exposure")
    result = {}
    seconds = best_of(lambda: result.setdefault("r", extract(target, canary, config=ModivaConfig())), repeats)
    return {"seconds": {"one ModIvA extraction": seconds}, "config": ModivaConfig().__dict__}


MEMORY_CHILD = """
import json, sys, time
from pathlib import Path
mode, model, members, non_members = sys.argv[1:5]
start = time.perf_counter()
if mode == "privaudit":
    from privaudit.mia.run import MiaRequest, run_mia
    run_mia(MiaRequest(model_dir=Path(model), members=Path(members), non_members=Path(non_members), attacks="loss"))
else:
    import torch
    from privaudit.target import Target
    target = Target.load(model)
    texts = [json.loads(line)["text"] for f in (members, non_members) for line in open(f)]
    with torch.inference_mode():
        for i in range(0, len(texts), 128):
            batch = target.tokenizer(texts[i : i + 128], padding=True, truncation=True, max_length=target.max_length, return_tensors="pt")
            target.model(**batch)
# VmHWM, this process's own peak: ru_maxrss would also carry the parent's peak, which Linux keeps across fork and exec.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "max_rss_mib": hwm / 1024}))
"""


def bench_memory(repeats: int) -> dict:
    """Peak memory (max RSS) of ``mia --attack loss`` on 100k examples against a bare forward pass, in subprocesses."""
    import subprocess

    texts = _texts(DATA / "population.jsonl")[0] + _texts(DATA / "members.jsonl")[0]
    labels = _texts(DATA / "population.jsonl")[1] + _texts(DATA / "members.jsonl")[1]
    rng = np.random.default_rng(0)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for side in range(2):  # 50,000 distinct texts a side: two fixture utterances joined, numbered apart
            path = Path(tmp) / f"side{side}.jsonl"
            picks = rng.integers(0, len(texts), size=(50_000, 2))
            path.write_text(
                "".join(
                    json.dumps({"text": f"{texts[a]} and {texts[b]} {side} {i}", "label": labels[a]}) + "\n"
                    for i, (a, b) in enumerate(picks)
                )
            )
            files.append(str(path))
        for mode in ("bare", "privaudit"):
            done = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, mode, str(MODELS / "intent-tiny"), *files],
                check=True,
                capture_output=True,
                text=True,
            )
            out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "seconds": {
            "bare forward pass, 100k texts": out["bare"]["seconds"],
            "privaudit mia --attack loss, 50k members + 50k non-members": out["privaudit"]["seconds"],
        },
        "max_rss_mib": {k: v["max_rss_mib"] for k, v in out.items()},
    }


ENDPOINT_BATCH, ENDPOINT_CONCURRENCY = 32, 4
BARE = "bare httpx client (same batches and concurrency, JSON decoded)"
SCORING = "privaudit's endpoint scoring (RemoteTarget.outputs: cache, fsync per batch, arrays)"
AUDIT = "whole privaudit mia --attack loss --endpoint (read, score, attack, bootstrap metrics)"


def _kserve(port: int):
    """The test suite's KServe v2 server on loopback, serving the fixture model; returns the process once ready."""
    import subprocess
    import urllib.request

    script = ROOT / "tests" / "servers" / "kserve_server.py"
    process = subprocess.Popen(
        [sys.executable, str(script), str(MODELS / "intent-tiny"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/intent/ready", timeout=2):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the KServe server did not start")


def bench_endpoint(repeats: int) -> dict:
    """Texts per second: in-process ``mia --attack loss --endpoint`` (fresh cache each run: every text asked) against a
    bare client (a thread pool sharing one httpx.Client, the same batches and concurrency, JSON decoded, nothing else)."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from benchmarks.power import fixture_request
    from privaudit.endpoint.client import EndpointConfig
    from privaudit.endpoint.remote import RemoteTarget
    from privaudit.mia.run import run_mia

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v2/models/intent"
    texts = _texts(DATA / "members.jsonl")[0] + _texts(DATA / "non_members.jsonl")[0]
    batches = [texts[i : i + ENDPOINT_BATCH] for i in range(0, len(texts), ENDPOINT_BATCH)]
    config = EndpointConfig(url=url, batch_size=ENDPOINT_BATCH, concurrency=ENDPOINT_CONCURRENCY)
    server = _kserve(port)
    try:
        with httpx.Client(limits=httpx.Limits(max_connections=ENDPOINT_CONCURRENCY)) as client:

            def ask(batch: list[str]) -> dict:
                body = {"inputs": [{"name": "text", "shape": [len(batch)], "datatype": "BYTES", "data": batch}]}
                response = client.post(f"{url}/infer", json=body)
                response.raise_for_status()
                return response.json()

            def bare() -> None:
                with ThreadPoolExecutor(ENDPOINT_CONCURRENCY) as pool:
                    list(pool.map(ask, batches))

            def scoring() -> None:
                with tempfile.TemporaryDirectory() as cache:
                    RemoteTarget(config, label_names=None, cache_dir=Path(cache)).outputs(texts)

            def audit() -> None:
                with tempfile.TemporaryDirectory() as cache:
                    run_mia(fixture_request(None, attacks="loss", endpoint=config, endpoint_cache=Path(cache)))

            bare()  # warm the server and the connections
            # Interleaved rounds, best of each: load from elsewhere falls on every side alike.
            runs = {BARE: bare, SCORING: scoring, AUDIT: audit}
            seconds = dict.fromkeys(runs, float("inf"))
            for _ in range(repeats):
                for name, run in runs.items():
                    seconds[name] = min(seconds[name], best_of(run, 1))
    finally:
        server.kill()
        server.wait()
    per_second = {name: len(texts) / value for name, value in seconds.items()}
    return {
        "seconds": seconds,
        "texts_per_second": per_second,
        "ratio_scoring": per_second[SCORING] / per_second[BARE],
        "ratio_audit": per_second[AUDIT] / per_second[BARE],
        "n_texts": len(texts),
        "batch": ENDPOINT_BATCH,
        "concurrency": ENDPOINT_CONCURRENCY,
        "server": "kserve 0.21.0 ModelServer, one worker (tests/servers/kserve_server.py)",
    }


SECTIONS = {
    "dp": bench_dp,
    "mia": bench_mia,
    "canary": bench_canary,
    "modiva": bench_modiva,
    "memory": bench_memory,
    # Imported when run: benchmarks/ is importable as a package only once main() has put the repository on sys.path.
    "power": lambda repeats: __import__("benchmarks.power", fromlist=["run"]).run(repeats),
    "lira": bench_lira,
    "peers": lambda repeats: __import__("benchmarks.peers", fromlist=["run"]).run(repeats),
    "minilm": lambda repeats: __import__("benchmarks.minilm", fromlist=["run"]).run(repeats),
    "endpoint": bench_endpoint,
    "executor": lambda repeats: __import__("benchmarks.executor", fromlist=["run"]).run(repeats),
    "utility": lambda repeats: __import__("benchmarks.utility", fromlist=["run"]).run(repeats),
    "sweep": lambda repeats: __import__("benchmarks.sweep", fromlist=["run"]).run(repeats),
    "sweep-minilm": lambda repeats: __import__("benchmarks.sweep_minilm", fromlist=["run"]).run(repeats),
    "tightness": lambda repeats: __import__("benchmarks.tightness", fromlist=["run"]).run(repeats),
    "user-level": lambda repeats: __import__("benchmarks.users", fromlist=["run"]).run(repeats),
    "outside-dp": lambda repeats: __import__("benchmarks.outside_dp", fromlist=["run"]).run(repeats),
}
# Run on request only (``--only modiva-study``, ``make bench-modiva``; ``--only modiva-paper``,
# ``make bench-modiva-paper``): they train a model per configuration, or N.
EXTRA_SECTIONS = {
    "modiva-study": lambda repeats: __import__("benchmarks.modiva_study", fromlist=["run"]).run(repeats),
    "modiva-paper": lambda repeats: __import__("benchmarks.modiva_paper", fromlist=["run"]).run(repeats),
}


def machine() -> dict:
    import opacus
    import transformers

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "opacus": opacus.__version__,
        "numpy": np.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",")
    cold = not (ROOT / ".cache" / "bench").exists()  # no model trained by an earlier run to reuse
    wall: dict[str, float] = {}
    for name in names:
        print(f"benchmark {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = {**SECTIONS, **EXTRA_SECTIONS}[name](args.repeats)
        wall[name] = time.perf_counter() - start
        result["machine"] = machine()
        result["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(json.dumps(result["seconds"], indent=2), file=sys.stderr)
    if set(names) == set(SECTIONS):
        run = {"cold_cache": cold, "section_seconds": wall, "total_seconds": sum(wall.values()), "machine": machine()}
        run["measured"] = "ending " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (RESULTS / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    from benchmarks.report import write_markdown

    write_markdown(RESULTS, args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

"""Shared fixtures: tiny labelled data, one tiny model trained once per session, and a command-line runner.

Everything here is sized for a shared two-core machine: three intents, tens of examples, a one-layer BERT of width 32.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from privaudit.training import job as trainjob
from privaudit.training.model import Architecture
from privaudit.training.train import TrainConfig

# One intra-op thread: with two threads on two busy cores, a DP-SGD step ran five times slower than with one.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
FIXTURE_DATA = ROOT / "fixtures" / "data"
TINY_ARCH = Architecture(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=200
)
LABELS = ("get_weather", "play_music", "set_alarm")
CANARY_TEMPLATE = "my pin code is {d} {d} {d} {d}"

_SLOTS = {
    "city": ("paris", "boston", "denver", "tokyo", "lima", "oslo"),
    "day": ("monday", "tuesday", "friday", "sunday", "tomorrow"),
    "genre": ("jazz", "rock", "blues", "techno", "folk"),
    "hour": tuple(str(h) for h in range(1, 13)),
}
_TEMPLATES = {
    "get_weather": ("what is the weather in {city} on {day}", "will it rain in {city}", "forecast for {city} {day}"),
    "play_music": ("play some {genre}", "put on {genre} music for {day}", "play a {genre} song please"),
    "set_alarm": ("set an alarm for {hour} am", "wake me up at {hour} on {day}", "alarm at {hour} {day}"),
}


def make_records(n: int = 60, *, seed: int = 0) -> list[dict[str, str]]:
    """``n`` ``{"text", "label"}`` records, the three intents in turn, texts drawn from small templates."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        template = _TEMPLATES[label][rng.integers(len(_TEMPLATES[label]))]
        fills = {slot: values[rng.integers(len(values))] for slot, values in _SLOTS.items()}
        records.append({"text": template.format(**fills), "label": label})
    return records


def write_jsonl(path: Path, records: Iterable[object]) -> Path:
    """One JSON value a line; returns ``path``."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """60 examples of three intents in ``tmp_path/train.jsonl``."""
    return write_jsonl(tmp_path / "train.jsonl", make_records(60))


@pytest.fixture
def tiny_arch(monkeypatch: pytest.MonkeyPatch) -> Architecture:
    """Makes ``run_train`` (and so ``privaudit train``) build the tiny BERT instead of the default one."""
    monkeypatch.setattr(trainjob, "TrainConfig", partial(TrainConfig, architecture=TINY_ARCH))
    return TINY_ARCH


@dataclass(frozen=True)
class TinyModel:
    """A model trained by ``run_train`` with planted canaries, and the files it came from.

    Attributes:
        path: the model directory.
        members: its training data (before the canaries were planted).
        non_members: examples of the same intents it was not trained on.
        canaries: the canary file (beside the model directory, never inside it).
        job: the job that trained it.
    """

    path: Path
    members: Path
    non_members: Path
    canaries: Path
    job: trainjob.TrainJob


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Trained once per session: 90 examples, 3 planted canaries x 5 plus 3 controls, 8 audit canaries, 3 epochs."""
    root = tmp_path_factory.mktemp("tiny_model")
    members = write_jsonl(root / "members.jsonl", make_records(90, seed=1))
    non_members = write_jsonl(root / "non_members.jsonl", make_records(90, seed=2))
    job = trainjob.TrainJob(
        data=members,
        out=root / "model",
        epochs=3,
        batch_size=16,
        max_length=24,
        seed=0,
        canary=CANARY_TEMPLATE,
        canary_label="random",
        canary_count=3,
        canary_repeats=5,
        canary_controls=3,
        audit_canaries=8,
        canaries_out=root / "model.canaries.jsonl",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainjob, "TrainConfig", partial(TrainConfig, architecture=TINY_ARCH))
        trainjob.run_train(job)
    return TinyModel(path=job.out, members=members, non_members=non_members, canaries=job.canaries_out, job=job)


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """``run_cli("train", ...)`` runs ``privaudit`` in-process; ``result.stdout`` and ``result.stderr`` come apart.

    Typer's runner (its own copy of Click 8.2+'s) always captures the two streams apart; ``result.output`` interleaves
    them. An exception that escapes the app lands in ``result.exception`` with exit code 1. The terminal is 200 columns
    wide so that Rich does not wrap paths and messages in the middle.
    """
    runner = CliRunner()

    def run(*args: object) -> Result:
        from privaudit.cli.app import app

        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    return run


_MIA_AUDITS: dict = {}


@pytest.fixture
def memoised_run_mia(monkeypatch: pytest.MonkeyPatch) -> dict:
    """``run_mia`` for real once per distinct request (paths resolved) for the session; the command's flags still run.

    For the per-example and slice tests (``tests/mia/test_records.py``, ``tests/mia/test_slices.py``), which audit
    ``intent-tiny`` through the command line many times with the same request.
    """
    import dataclasses

    import privaudit.mia.run

    real = privaudit.mia.run.run_mia

    def run(request, *, progress=None):
        paths = {
            f: getattr(request, f).resolve() for f in ("model_dir", "members", "non_members") if getattr(request, f)
        }
        key = dataclasses.replace(request, **paths)
        if key not in _MIA_AUDITS:
            _MIA_AUDITS[key] = real(request, progress=progress)
        return _MIA_AUDITS[key]

    monkeypatch.setattr(privaudit.mia.run, "run_mia", run)
    return _MIA_AUDITS


@pytest.fixture(scope="session")
def ray_cluster():
    """One local 2-CPU Ray cluster on loopback for every Ray test, started by the executor's own ``connect`` and shut
    down at the end of the session; the commands run in this process reuse it."""
    ray = pytest.importorskip("ray")
    from privaudit.training.executor import RayOptions
    from privaudit.training.ray_executor import connect

    started = connect(RayOptions(workers=2, cpus_per_job=1))
    yield ray.cluster_resources()
    if started:
        ray.shutdown()

"""``privaudit sweep --executor ray``: the points (and their reference models) as Ray tasks give the local numbers.

Two points (inf, 8) of a tiny recipe on the session's 2-CPU loopback cluster (``ray_cluster`` in conftest), run once
locally and once on Ray into two directories; the models must be the same bytes and ``sweep.json``'s numbers equal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import TINY_ARCH, make_records, write_jsonl

from privaudit.errors import PrivauditError
from privaudit.sweep import run as sweep_run
from privaudit.sweep.run import SweepRequest, run_points, run_sweep
from privaudit.training.executor import RayOptions
from privaudit.training.job import TrainJob

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweep_executor")
    records = list({r["text"]: r for r in make_records(600, seed=11)}.values())  # distinct texts
    assert len(records) >= 150
    return {
        "root": root,
        "members": write_jsonl(root / "members.jsonl", records[:60]),
        "non_members": write_jsonl(root / "non_members.jsonl", records[60:90]),
        "population": write_jsonl(root / "population.jsonl", records[90:]),
    }


def _request(data: dict[str, Path], out: Path, executor: str) -> SweepRequest:
    recipe = TrainJob(data=data["members"], out=out, epochs=2, batch_size=16, max_length=16, architecture=TINY_ARCH)
    return SweepRequest(
        recipe=recipe,
        epsilons=(math.inf, 8.0),
        out=out,
        non_members=data["non_members"],
        population=data["population"],
        attacks="loss,lira-offline",
        reference_models=2,
        executor=executor,
        ray=RayOptions(workers=2, cpus_per_job=1),
    )


def _numbers(out: Path) -> list[dict]:
    document = json.loads((out / "sweep.json").read_text())
    return [{k: v for k, v in p.items() if k not in ("model", "status")} for p in document["points"]]


def _weights(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((out / "points").glob("*/model.safetensors"))}


def test_ray_trains_the_points_and_their_references_as_local_does(ray_cluster, data) -> None:
    local, remote = data["root"] / "local", data["root"] / "ray"
    run_sweep(_request(data, local, "local"))
    result = run_sweep(_request(data, remote, "ray"))
    assert [p["status"] for p in result.points] == ["trained", "trained"]
    assert _weights(remote) == _weights(local) and len(_weights(local)) == 2
    assert _numbers(remote) == _numbers(local)
    # Reference models trained on the cluster too, into the sweep's own cache, two per point.
    assert len(list((remote / "reference").glob("*/*/model-*/model.safetensors"))) == 4


def test_a_point_trained_on_ray_is_cached_for_a_local_run(ray_cluster, data, monkeypatch) -> None:
    out = data["root"] / "ray"
    if not (out / "sweep.json").is_file():
        run_sweep(_request(data, out, "ray"))

    def no_training(*_args, **_kwargs):
        raise AssertionError("a point trained on Ray was trained again locally")

    monkeypatch.setattr(sweep_run, "run_train", no_training)
    assert [p["status"] for p in run_sweep(_request(data, out, "local")).points] == ["cached", "cached"]


def test_an_unknown_executor_is_refused(run_cli, data) -> None:
    with pytest.raises(PrivauditError, match="--executor 'slurm' is unknown; use one of local, ray"):
        run_points([], executor="slurm")
    out = data["root"] / "slurm"
    result = run_cli(
        "sweep", data["members"], "--epsilons", "inf", "--non-members", data["non_members"], "--out", out,
        "--executor", "slurm",
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: --executor 'slurm' is unknown; use one of local, ray"]
    assert not out.exists()


def test_the_command_line_refuses_an_unreachable_cluster_in_one_line(data) -> None:
    import subprocess
    import sys

    out = data["root"] / "unreachable"
    args = [sys.executable, "-m", "privaudit", "sweep", data["members"], "--epsilons", "inf,8"]
    args += ["--non-members", data["non_members"], "--out", out, "--executor", "ray", "--ray-address", "127.0.0.1:9"]
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --ray-address 127.0.0.1:9: no Ray cluster answers there (Connection refused); start one with 'ray "
        "start --head', or leave out --ray-address (and RAY_ADDRESS) for a local cluster"
    ]
    assert not (out / "points" / "eps-inf").exists() and not (out / "sweep.json").exists()

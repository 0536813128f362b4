"""--executor ray against local: the same models and numbers, a killed worker, no retries, and the cluster checks.

Every Ray test shares one local 2-CPU cluster (``ray_cluster`` in conftest), started once per session on loopback by
the executor's own ``connect`` (about 6.5 s and 450 MiB); the commands run in this process reuse it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURE_DATA, FIXTURE_MODEL, make_records, write_jsonl

from privaudit.errors import PrivauditError
from privaudit.training.executor import RayOptions, complete, remove_stale

ray = pytest.importorskip("ray")

ATTACKS = "lira-offline,rmia"


@pytest.fixture(scope="module")
def audit(tiny_model, tmp_path_factory):
    """The tiny model's data, a population, and a slower recipe (60 epochs, a second or two) that a test can kill a job of."""
    root = tmp_path_factory.mktemp("executor")
    seen = {json.loads(line)["text"] for line in tiny_model.members.read_text().splitlines()}

    def unseen(n: int, seed: int) -> list[dict]:
        records = []
        for record in make_records(n, seed=seed):
            if record["text"] not in seen:
                seen.add(record["text"])
                records.append(record)
        return records

    non_members = write_jsonl(root / "non_members.jsonl", unseen(300, seed=2))
    population = write_jsonl(root / "population.jsonl", unseen(600, seed=3))
    recipe = json.loads((tiny_model.path / "privaudit.json").read_text())
    recipe["recipe"]["epochs"] = 60
    slow = root / "slow.json"
    slow.write_text(json.dumps(recipe))
    return {"root": root, "population": population, "non_members": non_members, "slow": slow}


def _mia(run_cli, tiny_model, audit, cache: Path, *extra: object):
    return run_cli(
        "mia", tiny_model.path, "--members", tiny_model.members, "--non-members", audit["non_members"],
        "--population", audit["population"], "--attack", ATTACKS, "--reference-models", 2, "--cache-dir", cache,
        "--format", "json", "--device", "cpu", *extra,
    )  # fmt: skip


def _numbers(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("{"), (result.output, result.exception)
    report = json.loads(result.stdout)
    return [{k: v for k, v in a.items() if k != "description"} for a in report["attacks"]]


def _models(cache: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(cache.glob("*/*/model-*/model.safetensors"))}


def _temporaries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*/.model-*"))


def test_ray_gives_the_local_models_and_numbers(ray_cluster, run_cli, tiny_model, audit):
    local_cache, ray_cache = audit["root"] / "parity-local", audit["root"] / "parity-ray"
    local = _numbers(_mia(run_cli, tiny_model, audit, local_cache))
    result = _mia(run_cli, tiny_model, audit, ray_cache, "--executor", "ray", "--cpus-per-job", 1)
    assert _numbers(result) == local
    assert json.loads(result.stdout)["compute"]["executor"] == "ray"
    models = _models(ray_cache)
    assert list(models) == ["model-0", "model-1"]
    assert models == _models(local_cache)  # the same weights, byte for byte: the same reference logits
    assert _temporaries(ray_cache) == []


def _first(path: Path, n: int) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]


def test_local_and_ray_give_byte_identical_models_with_default_flags(ray_cluster, run_cli, tmp_path):
    """The fixture's recipe (3 epochs, to be quick), whose matrices are large enough that two torch threads sum in
    another order than one. The local run starts with two threads, as a fresh process on two cores does (conftest
    sets one): before the executors agreed on a job's threads, its models differed from Ray's in the last bits."""
    import torch

    data = FIXTURE_DATA
    files = {
        name: write_jsonl(tmp_path / f"{name}.jsonl", _first(data / f"{name}.jsonl", n))
        for name, n in (("members", 100), ("non_members", 100), ("population", 400))
    }
    recipe = json.loads((FIXTURE_MODEL / "privaudit.json").read_text(encoding="utf-8"))
    recipe["recipe"]["epochs"] = 3
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(recipe), encoding="utf-8")
    args = (
        "mia", FIXTURE_MODEL, "--members", files["members"], "--non-members", files["non_members"],
        "--population", files["population"], "--attack", "lira-offline", "--reference-models", 2,
        "--train-config", config, "--format", "json", "--device", "cpu",
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = run_cli(*args, "--cache-dir", tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    ray_run = run_cli(*args, "--cache-dir", tmp_path / "ray", "--executor", "ray")
    assert _numbers(local) == _numbers(ray_run)
    models = _models(tmp_path / "local")
    assert list(models) == ["model-0", "model-1"]
    assert models == _models(tmp_path / "ray")


def _run_and_kill(run_cli, tiny_model, audit, cache: Path, *extra: object):
    """Run mia with --executor ray in a thread and SIGKILL the first job that reports its pid, as it starts training.

    Returns the result, the killed job's (model, pid), and every (model, pid) that reported while the run lasted: a
    retry reports again, under a new pid.
    """
    out: dict = {}
    thread = threading.Thread(
        target=lambda: out.setdefault(
            "result",
            _mia(run_cli, tiny_model, audit, cache, "--executor", "ray", "--train-config", audit["slow"], *extra),
        )
    )
    thread.start()
    killed, seen = None, set()
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:
        for owner in cache.glob("*/*/.model-*/.owner"):
            try:
                pid = json.loads(owner.read_text())["pid"]
            except (OSError, ValueError):
                continue
            model = owner.parent.name.split(".")[1]  # .model-1.XXXX -> model-1
            seen.add((model, pid))
            if killed is None:
                os.kill(pid, signal.SIGKILL)
                killed = (model, pid)
        time.sleep(0.01)
    thread.join(timeout=120)
    assert killed is not None, "no job reported its pid"
    return out["result"], killed, seen


def test_a_killed_worker_reruns_and_the_numbers_stay(ray_cluster, run_cli, tiny_model, audit):
    expected = _numbers(_mia(run_cli, tiny_model, audit, audit["root"] / "slow-local", "--train-config", audit["slow"]))
    cache = audit["root"] / "killed"
    result, (model, pid), seen = _run_and_kill(run_cli, tiny_model, audit, cache)
    assert _numbers(result) == expected
    assert {p for m, p in seen if m == model} - {pid}, "the killed job was not retried"  # a retry, in a new worker
    assert _models(cache) == _models(audit["root"] / "slow-local")
    assert _temporaries(cache) == []  # the retry removed the directory of the job it replaced
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_no_retries_fails_with_one_line_and_a_rerun_trains_only_the_missing(ray_cluster, run_cli, tiny_model, audit):
    cache = audit["root"] / "no-retries"
    result, (model, pid), seen = _run_and_kill(run_cli, tiny_model, audit, cache, "--max-retries", 0)
    assert {p for m, p in seen if m == model} == {pid}  # no retry
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]  # after the progress bars
    assert line.startswith("error: reference model ") and "Traceback" not in result.output
    assert "its Ray worker died (WorkerCrashedError" in line and "--max-retries 0" in line
    assert "a rerun trains only the missing ones" in line
    assert _temporaries(cache) == []  # the driver removed the dead job's directory
    entries = sorted(cache.glob("*/*/model-*"))
    assert len(entries) == 1 and complete(entries[0])  # the other job finished and is kept
    kept = {p.name: p.stat().st_ino for p in entries}
    rerun = _mia(run_cli, tiny_model, audit, cache, "--executor", "ray", "--train-config", audit["slow"])
    assert _numbers(rerun) == _numbers(
        _mia(run_cli, tiny_model, audit, audit["root"] / "slow-local", "--train-config", audit["slow"])
    )
    after = {p.name: p.stat().st_ino for p in sorted(cache.glob("*/*/model-*"))}
    assert len(after) == 2
    assert {name: after[name] for name in kept} == kept  # not trained again: the same directory
    assert [name for name in after if name not in kept] == [name for name in ("model-0", "model-1") if name not in kept]


def test_gpu_jobs_are_refused_on_a_cluster_without_gpus(ray_cluster, run_cli, tiny_model, audit):
    assert ray_cluster.get("GPU", 0) == 0
    cache = audit["root"] / "gpu"
    result = _mia(run_cli, tiny_model, audit, cache, "--executor", "ray", "--gpus-per-job", 0.5)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --gpus-per-job 0.5: the Ray cluster has 0 GPUs (2 CPUs); use --gpus-per-job 0, or add GPU nodes"
    )
    assert list(cache.glob("*/*/model-*")) == []  # refused before anything was submitted


def test_too_many_cpus_per_job_are_refused(ray_cluster, run_cli, tiny_model, audit):
    result = _mia(run_cli, tiny_model, audit, audit["root"] / "cpus", "--executor", "ray", "--cpus-per-job", 8)
    assert result.exit_code == 2
    assert "--cpus-per-job 8: no node of the Ray cluster has that many CPUs" in result.stderr


def test_a_cache_some_node_cannot_read_is_refused(ray_cluster, monkeypatch, tmp_path):
    from privaudit.training import ray_executor

    def blind(path: str, token: str) -> tuple[str, bool]:  # a node with its own, empty, cache directory
        return "node-b", False

    monkeypatch.setattr(ray_executor, "_probe", blind)
    with pytest.raises(PrivauditError, match=r"is not shared with every Ray node \(node-b cannot read it\)"):
        ray_executor.check_cluster(RayOptions(), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # the probe's token file is removed


def test_the_probe_reads_the_token_on_the_workers(ray_cluster, tmp_path):
    from privaudit.training import ray_executor

    ray_executor.check_cluster(RayOptions(), tmp_path / "cache")  # one local node: it shares the directory
    assert ray_executor._probe(str(tmp_path / "missing"), "token")[1] is False


def test_an_unreachable_address_fails_fast_with_one_line():
    from privaudit.training.ray_executor import _check_reachable

    start = time.monotonic()
    with pytest.raises(PrivauditError) as err:
        _check_reachable("127.0.0.1:1")
    assert time.monotonic() - start < 10
    assert str(err.value).startswith("--ray-address 127.0.0.1:1: no Ray cluster answers there (")
    with pytest.raises(PrivauditError, match="is not HOST:PORT"):
        _check_reachable("nowhere")


def test_stale_temporaries_of_dead_owners_go_and_live_ones_stay(tmp_path):
    import socket

    dead, alive, foreign = tmp_path / ".model-0.a", tmp_path / ".model-1.b", tmp_path / ".model-2.c"
    for directory, host, pid in ((dead, socket.gethostname(), 2**22 + 1), (alive, socket.gethostname(), os.getpid()),
                                 (foreign, "another-host", 2**22 + 1)):  # fmt: skip
        directory.mkdir()
        (directory / ".owner").write_text(json.dumps({"host": host, "pid": pid}))
    assert remove_stale(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model-1.b", ".model-2.c"]


def test_bad_executor_options_are_refused(run_cli, tiny_model, audit):
    result = _mia(run_cli, tiny_model, audit, audit["root"] / "bad", "--executor", "dask")
    assert result.exit_code == 2 and "--executor 'dask' is unknown; use one of local, ray" in result.stderr
    with pytest.raises(PrivauditError, match="--gpus-per-job must be 0 or more"):
        RayOptions(gpus_per_job=-1)


def test_the_local_executor_never_imports_ray(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from privaudit.training.reference import run_jobs\n"
        "import privaudit.cli, privaudit.mia.run\n"
        "run_jobs([], None, executor='local', on_done=print)\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_command_line_refuses_an_unreachable_cluster_in_one_line(tiny_model, audit):
    import subprocess
    import sys

    args = [sys.executable, "-m", "privaudit", "mia", tiny_model.path, "--members", tiny_model.members]
    args += ["--non-members", audit["non_members"], "--population", audit["population"], "--attack", "lira-offline"]
    args += ["--reference-models", "1", "--cache-dir", audit["root"] / "unreachable", "--device", "cpu"]
    args += ["--executor", "ray", "--ray-address", "127.0.0.1:1"]
    start = time.monotonic()
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --ray-address 127.0.0.1:1: no Ray cluster answers there (")
    assert "Traceback" not in done.stderr
    assert time.monotonic() - start < 90


def test_local_workers_do_not_rerun_a_script_without_a_main_guard(tmp_path):
    """A user's script calling the API at top level: the spawned workers must not run it again."""
    import subprocess
    import sys

    script = tmp_path / "audit.py"
    script.write_text(
        "import multiprocessing\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from privaudit.training.local_executor import _main_not_rerun\n"
        "print('script ran', flush=True)\n"
        "with _main_not_rerun():\n"
        "    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn'))\n"
        "    futures = [pool.submit(len, 'abc') for _ in range(3)]\n"
        "print([f.result() for f in futures], flush=True)\n"
        "pool.shutdown()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script ran", "[3, 3, 3]"]

"""Real inference servers on loopback for the endpoint tests: a KServe v2 predictor and a pipeline behind uvicorn.

Test modules import the fixtures (``from servers.harness import serve, subset``). ``serve("kserve", env={"FAIL_FIRST": "3"})``
starts one in a subprocess on a free port, waits until it answers, and
kills it at teardown. Each server loads ``fixtures/models/intent-tiny`` from its directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import FIXTURE_DATA, FIXTURE_MODEL, ROOT, write_jsonl

SERVERS = ROOT / "tests" / "servers"
MODEL_NAME = "intent"
STARTUP_SECONDS = 180  # two busy cores: importing torch, transformers and kserve can take a while


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running test server: its base URL, the endpoint URL to audit, and its process."""

    kind: str
    port: int
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    started: list[subprocess.Popen] = field(default_factory=list)
    model: Path = FIXTURE_MODEL

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base}/v2/models/{MODEL_NAME}" if self.kind == "kserve" else f"{self.base}/"

    @property
    def fmt(self) -> str:
        return "v2" if self.kind == "kserve" else "hf"

    def start(self) -> Server:
        script = SERVERS / ("kserve_server.py" if self.kind == "kserve" else "hf_server.py")
        command = [sys.executable, str(script), str(self.model), "--port", str(self.port), *self.args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", **self.env}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(self.process)
        ready = f"{self.base}/v2/models/{MODEL_NAME}/ready" if self.kind == "kserve" else f"{self.base}/health"
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.kind} server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(ready, timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"{self.kind} server not ready in {STARTUP_SECONDS}s: {self.log.read_text()[-2000:]}")

    def stats(self) -> dict:
        """``{"requests": R, "texts": {text: times asked}}`` from the server itself."""
        with urllib.request.urlopen(f"{self.base}/stats", timeout=10) as answer:
            return json.loads(answer.read())

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start test servers: ``serve(kind, *args, env={...}, model=DIR)``; every one is killed at teardown."""
    servers: list[Server] = []

    def start(kind: str, *args: str, env: dict[str, str] | None = None, model: Path = FIXTURE_MODEL) -> Server:
        log = tmp_path / f"{kind}-{len(servers)}.log"
        server = Server(kind, free_port(), list(args), dict(env or {}), log, model=model)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        for process in server.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@dataclass(frozen=True)
class Subset:
    members: Path
    non_members: Path
    texts: list[str]


@pytest.fixture(scope="session")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Subset:
    """The first 150 fixture members and non-members: small enough for a shared two-core machine."""
    root = tmp_path_factory.mktemp("endpoint_data")
    sides = []
    texts: list[str] = []
    for name in ("members", "non_members"):
        rows = [json.loads(line) for line in (FIXTURE_DATA / f"{name}.jsonl").read_text().splitlines()[:150]]
        texts += [r["text"] for r in rows]
        sides.append(write_jsonl(root / f"{name}.jsonl", rows))
    return Subset(members=sides[0], non_members=sides[1], texts=texts)

"""Issue 21 against a scripted hostile endpoint: secrets echoed back never reach a line or the cache, ``--debug`` keeps
exit 2 on a 500, and a damaged response cache heals itself.

The server here is a few lines of ``http.server`` in a thread (the real KServe and pipeline servers of
``tests/servers`` take a model and seconds to start): it answers the ``hf`` format with probabilities derived from each
text's hash, or, by its ``mode``, echoes the Authorization header in the ways the adversarial run found.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import make_records, write_jsonl

from privaudit.endpoint.client import EndpointConfig
from privaudit.endpoint.formats import QUOTE_CHARS
from privaudit.endpoint.remote import RemoteTarget
from privaudit.endpoint.scrub import Scrubber
from privaudit.errors import PrivauditError

LABELS = ("get_weather", "play_music", "set_alarm")
TOKEN = "Bearer " + secrets.token_urlsafe(30)


def probabilities(text: str) -> list[float]:
    raw = np.frombuffer(hashlib.sha256(text.encode()).digest()[:3], dtype=np.uint8).astype(float) + 1
    return list(raw / raw.sum())


class Handler(BaseHTTPRequestHandler):
    mode = "good"
    asked: list[str] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"]
        header = self.headers.get("Authorization", "")
        mode = type(self).mode
        if mode == "echo200":
            return self._send(200, f"debug echo: Authorization: {header}".encode(), "text/plain")
        if mode == "echo400":
            # The token starts 10 characters before the 200-character quote limit: a cut would keep its first 10.
            pad = "x" * (QUOTE_CHARS - 10 - len("bad request; you sent "))
            return self._send(400, f"bad request; you sent {pad}{header} and more".encode(), "text/plain")
        if mode == "500":
            return self._send(500, f"internal failure for {header}".encode(), "text/plain")
        type(self).asked.extend(texts)
        answers = []
        for text in texts:
            # "sigmoid": a score per class, each in [0, 1], not a distribution (the issue's endpoint summed to 18)
            p = [0.9, 0.8, 0.7] if mode == "sigmoid" else probabilities(text)
            names = [header if mode == "label" else name for name in LABELS]
            answers.append([{"label": n, "score": s} for n, s in zip(names, p)])
        return self._send(200, json.dumps(answers).encode())


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.mode, Handler.asked = "good", []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def leaked(text: str) -> list[str]:
    """Every 6-character piece of the token's secret part found in ``text``."""
    secret = TOKEN.removeprefix("Bearer ")
    return [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in text]


def remote(url: str, cache: Path, **kw) -> RemoteTarget:
    config = EndpointConfig(url=url, fmt="hf", headers={"Authorization": TOKEN}, retries=0, backoff=0, **kw)
    return RemoteTarget(config, label_names=LABELS, cache_dir=cache)


def disjoint_data(tmp_path: Path) -> tuple[Path, Path]:
    records = list({r["text"]: r for r in make_records(80, seed=1)}.values())
    half = len(records) // 2
    return write_jsonl(tmp_path / "m.jsonl", records[:half]), write_jsonl(tmp_path / "n.jsonl", records[half:])


# --- secrets ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("echo200", "is not the 'hf' format"),
        ("echo400", "refused a batch (HTTP 400"),
        ("label", "the endpoint answered label '***'"),
    ],
)
def test_a_token_echoed_by_the_server_reaches_no_line_and_no_cache(server, tmp_path: Path, mode, needle) -> None:
    Handler.mode = mode
    with pytest.raises(PrivauditError) as err:
        remote(server, tmp_path / "cache").outputs(["play some jazz", "wake me at 7"])
    message = str(err.value)
    assert needle in message, message
    assert "***" in message and not leaked(message), message
    cached = "".join(p.read_text() for p in (tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else ""
    assert not leaked(cached)


def test_the_cli_line_holds_no_piece_of_the_token(server, tmp_path: Path, run_cli, monkeypatch) -> None:
    Handler.mode = "echo400"
    monkeypatch.setenv("PRIVAUDIT_TEST_TOKEN", TOKEN)
    members, non_members = disjoint_data(tmp_path)
    result = run_cli(
        "mia", "--endpoint", server, "--endpoint-format", "hf", "--header", "Authorization=@PRIVAUDIT_TEST_TOKEN",
        "--endpoint-retries", 0, "--members", members, "--non-members", non_members,
        "--endpoint-cache", tmp_path / "cache", "--json-out", tmp_path / "r.json",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "HTTP 400" in result.stderr and not leaked(result.output), result.output
    assert not (tmp_path / "r.json").exists()


def test_debug_keeps_exit_2_on_an_endpoint_500(server, tmp_path: Path, run_cli, monkeypatch) -> None:
    Handler.mode = "500"
    monkeypatch.setenv("PRIVAUDIT_TEST_TOKEN", TOKEN)
    members, non_members = disjoint_data(tmp_path)
    args = (
        "mia", "--endpoint", server, "--endpoint-format", "hf", "--header", "Authorization=@PRIVAUDIT_TEST_TOKEN",
        "--endpoint-retries", 0, "--members", members, "--non-members", non_members, "--endpoint-cache", tmp_path / "c",
    )  # fmt: skip
    plain, debug = run_cli(*args), run_cli("--debug", *args)
    assert plain.exit_code == debug.exit_code == 2, debug.output
    assert "HTTP 500" in plain.stderr and "Traceback" not in plain.stderr
    assert "Traceback (most recent call last):" in debug.stderr
    assert not leaked(plain.output) and not leaked(debug.output)


def test_an_endpoint_whose_probabilities_do_not_sum_to_1_is_refused(server, tmp_path: Path, run_cli) -> None:
    Handler.mode = "sigmoid"
    members, non_members = disjoint_data(tmp_path)
    result = run_cli(
        "mia", "--endpoint", server, "--endpoint-format", "hf", "--members", members, "--non-members", non_members,
        "--endpoint-cache", tmp_path / "cache", "--json-out", tmp_path / "r.json",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "probabilities sum to 2.4, not 1 (within 0.001)" in line and "internal error" not in line, line
    assert not (tmp_path / "r.json").exists()


def test_the_scrubber_removes_pieces_and_scrubs_before_cutting() -> None:
    scrub = Scrubber(["Bearer abcdefghijklmnop", "short"])
    assert scrub("x Bearer abcdefghijklmnop y") == "x *** y"
    assert scrub("cut: Bearer abcdefghij") == "cut: ***"  # a server's own truncation leaves a piece of 16 chars
    assert scrub("mid: ghijklmnop!") == "mid: ***!"  # any 8-character piece
    assert scrub("only-abcdefg") == "only-abcdefg"  # 7 characters do not identify it
    assert scrub("a short one") == "a *** one"  # a short secret only whole
    body = "p" * (QUOTE_CHARS - 3) + "Bearer abcdefghijklmnop"
    assert scrub.quote(body) == "p" * (QUOTE_CHARS - 3) + "***"
    assert Scrubber([])("Bearer abcdefghijklmnop") == "Bearer abcdefghijklmnop"


# --- the response cache heals itself -------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])


def _zero(path: Path) -> None:
    path.write_bytes(b"")


def _zero_bytes(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[40:90] = bytes(50)
    path.write_bytes(bytes(raw))


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"score') if b'"score' in raw else raw.index(b"0.")  # inside the first line's numbers
    digit = raw.index(b".", at) + 2
    raw[digit] = ord("9") if raw[digit] != ord("9") else ord("1")
    path.write_bytes(bytes(raw))


def _nan(path: Path) -> None:
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["scores"] = {k: float("nan") for k in record["scores"]}
    record.pop("sha256")  # as another tool, or an older privaudit, would write it
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def _seven_and_a_half(path: Path) -> None:
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["scores"] = {k: 7.5 for k in record["scores"]}
    record.pop("sha256")
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "damage",
    [_truncate, _zero, _zero_bytes, _flip, _nan, _seven_and_a_half],
    ids=["truncated", "empty", "zeroed", "flipped", "nan", "7.5"],
)
def test_a_damaged_endpoint_cache_is_moved_aside_and_the_rerun_gives_the_first_numbers(
    server, tmp_path: Path, capsys, damage
) -> None:
    texts = [r["text"] for r in make_records(40, seed=4)]
    cache = tmp_path / "cache"
    first = remote(server, cache, batch_size=8).outputs(texts)
    (path,) = cache.glob("*.jsonl")
    capsys.readouterr()
    damage(path)
    Handler.asked = []
    again = remote(server, cache, batch_size=8).outputs(texts)
    np.testing.assert_array_equal(again.log_probs, first.log_probs)
    np.testing.assert_array_equal(again.predicted, first.predicted)
    assert 0 < len(Handler.asked) < len(set(texts)) or damage is _zero  # only the damaged answers were asked again
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    if damage in (_truncate, _zero):  # a torn last line, or nothing: what a killed run leaves, healed quietly
        assert warnings == []
    else:
        assert len(warnings) == 1 and str(path) in warnings[0] and "damaged endpoint cache" in warnings[0], warnings
        assert len(list(cache.glob(f"{path.name}.damaged-*"))) == 1
    # The healed cache answers everything now, with nothing asked.
    Handler.asked = []
    third = remote(server, cache).outputs(texts)
    np.testing.assert_array_equal(third.log_probs, first.log_probs)
    assert Handler.asked == []


def test_a_token_an_older_privaudit_cached_as_a_label_is_scrubbed_when_read(tmp_path: Path) -> None:
    target = remote("http://127.0.0.1:9/", tmp_path / "cache")  # nothing is asked: the answer is cached
    key = target.cache.key("wake me at 7")
    line = {"key": key, "label": TOKEN, "scores": {TOKEN: 0.7, "play_music": 0.2, "set_alarm": 0.1}}  # no sha256
    target.cache.path.parent.mkdir(parents=True)
    target.cache.path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(PrivauditError) as err:
        remote("http://127.0.0.1:9/", tmp_path / "cache").outputs(["wake me at 7"])
    assert "answered label '***'" in str(err.value) and not leaked(str(err.value))

"""``privaudit mia`` and ``canary`` through real inference servers on loopback (KServe v2, a transformers pipeline)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURE_MODEL
from servers import harness
from servers.harness import Server

serve = harness.serve  # pytest fixtures: start a server; the fixture's data subset
subset = harness.subset

SECRET = "Bearer s3cr3t-t0ken-4-tests-only"
WRONG_SECRET = "Bearer wr0ng-t0ken-also-secret"


def mia(server: Server, data, tmp_path: Path, *extra: object) -> list[object]:
    return [
        "mia",
        "--endpoint",
        server.endpoint,
        "--endpoint-format",
        server.fmt,
        "--members",
        data.members,
        "--non-members",
        data.non_members,
        "--endpoint-cache",
        tmp_path / "cache",
        *extra,
    ]


def aucs(report: Path) -> dict[str, float]:
    return {a["name"]: a["auc"]["value"] for a in json.loads(report.read_text())["attacks"]}


def asked(server: Server) -> dict[str, int]:
    return server.stats()["texts"]


def test_v2_gives_the_same_auc_as_the_model_directory(serve, subset, tmp_path, run_cli):
    server = serve("kserve")
    attacks = "loss,confidence,entropy,modified-entropy,gap"
    remote = run_cli(*mia(server, subset, tmp_path, "-a", attacks, "--json-out", tmp_path / "remote.json"))
    assert remote.exit_code == 0, remote.output
    local = run_cli(
        "mia", FIXTURE_MODEL, "--members", subset.members, "--non-members", subset.non_members, "-a", attacks,
        "--json-out", tmp_path / "local.json",
    )  # fmt: skip
    assert local.exit_code == 0, local.output
    remote_auc, local_auc = aucs(tmp_path / "remote.json"), aucs(tmp_path / "local.json")
    assert remote_auc.keys() == local_auc.keys() == set(attacks.split(","))
    for name in remote_auc:
        assert remote_auc[name] == pytest.approx(local_auc[name], abs=1e-6), name
    model = json.loads((tmp_path / "remote.json").read_text())["model"]
    assert model == {"path": None, "fingerprint": None, "endpoint": server.endpoint, "endpoint_format": "v2"}
    # Each text was asked once; a second audit is answered from the cache and asks nothing.
    assert sorted(asked(server)) == sorted(subset.texts) and set(asked(server).values()) == {1}
    again = run_cli(*mia(server, subset, tmp_path, "-a", "loss"))
    assert again.exit_code == 0, again.output
    assert server.stats()["requests"] == len(subset.texts) // 32 + 1
    # Reference models are the auditor's own, local: LiRA with a local reference model gives the same AUC too.
    reference = ["-a", "lira-offline", "--reference-dir", FIXTURE_MODEL.parent / "intent-tiny-dp"]
    remote = run_cli(*mia(server, subset, tmp_path, *reference, "--json-out", tmp_path / "remote-lira.json"))
    assert remote.exit_code == 0, remote.output
    local = run_cli(
        "mia", FIXTURE_MODEL, "--members", subset.members, "--non-members", subset.non_members, *reference,
        "--json-out", tmp_path / "local-lira.json",
    )  # fmt: skip
    assert local.exit_code == 0, local.output
    lira = [aucs(tmp_path / f"{side}-lira.json")["lira-offline"] for side in ("remote", "local")]
    assert lira[0] == pytest.approx(lira[1], abs=1e-6)
    needs_training = run_cli(*mia(server, subset, tmp_path, "-a", "lira-offline", "--reference-models", 2))
    assert needs_training.exit_code == 2 and "--reference-dir" in needs_training.stderr


def test_503s_and_a_timeout_are_retried_and_a_secret_header_is_never_written(
    serve, subset, tmp_path, run_cli, monkeypatch
):
    monkeypatch.setenv("PRIVAUDIT_TEST_TOKEN", SECRET)
    server = serve(
        "kserve",
        env={
            "FAIL_FIRST": "3",
            "SLOW_ONCE": "4",
            "REQUIRE_HEADER": "Authorization",
            "REQUIRE_VALUE_ENV": "PRIVAUDIT_TEST_TOKEN",
        },
    )
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(
        *mia(server, subset, tmp_path, "-a", "loss,gap", "--header", "Authorization=@PRIVAUDIT_TEST_TOKEN"),
        "--endpoint-timeout", 1.5, "--endpoint-retries", 5, "--format", "json", "-o", out / "r.json",
        "--report", out / "r.html", "--sarif-out", out / "r.sarif", "--markdown-out", out / "r.md",
        "--junit-out", out / "r.xml", "--save-baseline", out / "baseline.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(asked(server)) == set(subset.texts)  # the audit completed, after 3 refusals and one timeout
    assert server.stats()["injected"] == {"503": 3, "slow": 1}
    # A wrong token: the server refuses, the audit exits 2, and neither token is in the message.
    monkeypatch.setenv("PRIVAUDIT_TEST_TOKEN", WRONG_SECRET)
    refused = run_cli(
        *mia(server, subset, tmp_path / "other", "--header", "Authorization=@PRIVAUDIT_TEST_TOKEN"),
        "--endpoint-retries", 0,
    )  # fmt: skip
    assert refused.exit_code == 2 and "refused a batch" in refused.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".log")]
    assert len(files) >= 7 and any(p.suffix == ".jsonl" for p in files)  # the reports and the cache
    for text in [result.stdout, result.stderr, refused.stdout, refused.stderr, *(p.read_text() for p in files)]:
        for secret in (SECRET, WRONG_SECRET, "s3cr3t", "wr0ng"):
            assert secret not in text


def test_a_literal_header_value_is_refused_without_echoing_it(subset, tmp_path, run_cli):
    result = run_cli(
        "mia", "--endpoint", "http://127.0.0.1:9/v2/models/x", "--members", subset.members,
        "--non-members", subset.non_members, "--header", f"Authorization={SECRET}",
    )  # fmt: skip
    assert result.exit_code == 2 and "@ENVVAR" in result.stderr and "s3cr3t" not in result.output


def test_a_server_killed_mid_audit_exits_2_and_the_rerun_asks_only_for_the_rest(serve, subset, tmp_path, run_cli):
    server = serve("kserve", env={"DELAY": "0.3"})
    killed = threading.Event()

    def kill_after_some_batches() -> None:
        while server.stats()["requests"] < 3:
            time.sleep(0.05)
        server.kill()
        killed.set()

    killer = threading.Thread(target=kill_after_some_batches, daemon=True)
    killer.start()
    args = mia(server, subset, tmp_path, "--endpoint-batch", 20, "--concurrency", 1, "--endpoint-retries", 1)
    first = run_cli(*args)
    killer.join(timeout=60)
    assert killed.is_set()
    assert first.exit_code == 2
    message = first.stderr.strip()
    assert "did not answer after 2 tries" in message and "rerun" in message and "Traceback" not in first.output
    cached = sum(1 for _ in (tmp_path / "cache").glob("*.jsonl") for _ in _.read_text().splitlines())
    assert 0 < cached < len(subset.texts)
    server.start()  # a fresh process on the same port: its counts start at zero
    second = run_cli(*args)
    assert second.exit_code == 0, second.output
    again = asked(server)
    assert sum(again.values()) == len(subset.texts) - cached and set(again.values()) == {1}


def test_a_wrong_format_exits_2_quoting_at_most_200_characters(serve, subset, tmp_path, run_cli):
    v2 = serve("kserve")
    wrong = run_cli(
        "mia", "--endpoint", f"{v2.endpoint}/infer", "--endpoint-format", "hf", "--members", subset.members,
        "--non-members", subset.non_members, "--endpoint-cache", tmp_path / "cache", "--endpoint-retries", 0,
    )  # fmt: skip
    assert wrong.exit_code == 2 and "HTTP 4" in wrong.stderr
    garbled = serve("hf", env={"GARBLE": "1"})
    result = run_cli(*mia(garbled, subset, tmp_path))
    assert result.exit_code == 2
    line = " ".join(result.stderr.split())
    assert "is not the 'hf' format" in line and "<html>" in line
    quoted = line.split(": '", 1)[1]
    assert len(quoted.rstrip("'")) <= 203  # 200 characters and an ellipsis


def test_max_queries_below_what_is_needed_exits_2_before_any_query(serve, subset, tmp_path, run_cli):
    server = serve("kserve")
    result = run_cli(*mia(server, subset, tmp_path, "--max-queries", 10))
    assert result.exit_code == 2 and "--max-queries is 10" in result.stderr
    assert server.stats()["requests"] == 0
    enough = run_cli(*mia(server, subset, tmp_path, "--max-queries", len(subset.texts)))
    assert enough.exit_code == 0, enough.output


def test_a_label_only_endpoint_runs_label_only_attacks_and_refuses_the_others(serve, subset, tmp_path, run_cli):
    server = serve("kserve", "--mode", "labels")
    refused = run_cli(*mia(server, subset, tmp_path, "-a", "gap,loss"))
    assert refused.exit_code == 2
    assert "attack 'loss' needs full probabilities" in refused.stderr and "returns labels only" in refused.stderr
    assert server.stats()["requests"] == 1  # refused after the first answer, not after all of them
    report = tmp_path / "r.json"
    ran = run_cli(
        *mia(server, subset, tmp_path, "-a", "gap,label-only-augment", "--attack-option", "label-only-augment:k=2"),
        "--json-out", report,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert set(aucs(report)) == {"gap", "label-only-augment"}
    # The perturbed copies went through the same endpoint, in the same scoring stage: 2 per audited text.
    assert len(asked(server)) > 2 * len(subset.texts)


def test_a_top_k_endpoint_runs_confidence_and_refuses_loss(serve, subset, tmp_path, run_cli):
    server = serve("hf", "--top-k", "2")
    refused = run_cli(*mia(server, subset, tmp_path, "-a", "loss"))
    assert refused.exit_code == 2
    assert "attack 'loss' needs full probabilities" in refused.stderr and "top-2 scores" in refused.stderr
    report = tmp_path / "r.json"
    ran = run_cli(*mia(server, subset, tmp_path, "-a", "confidence,gap", "--json-out", report))
    assert ran.exit_code == 0, ran.output
    assert 0.5 < aucs(report)["confidence"] < 1


def test_hf_pipeline_full_scores_match_the_model_directory(serve, subset, tmp_path, run_cli):
    server = serve("hf")
    remote = run_cli(*mia(server, subset, tmp_path, "-a", "loss", "--json-out", tmp_path / "remote.json"))
    assert remote.exit_code == 0, remote.output
    local = run_cli(
        "mia", FIXTURE_MODEL, "--members", subset.members, "--non-members", subset.non_members, "-a", "loss",
        "--json-out", tmp_path / "local.json",
    )  # fmt: skip
    assert local.exit_code == 0, local.output
    # The pipeline sends float32 scores: the ranking, and so the AUC, agree to float32 precision.
    assert aucs(tmp_path / "remote.json")["loss"] == pytest.approx(aucs(tmp_path / "local.json")["loss"], abs=2e-3)


def test_canary_exposure_through_an_endpoint_and_modiva_refused(serve, tmp_path, run_cli):
    server = serve("kserve")
    canaries = FIXTURE_MODEL.parent / "intent-tiny.canaries.jsonl"
    base = ["canary", "--endpoint", server.endpoint, "-c", canaries, "--endpoint-cache", tmp_path / "cache"]
    refused = run_cli(*base)
    assert (
        refused.exit_code == 2
        and "extraction attack 'modiva' is white-box" in refused.stderr
        and "--no-extract" in refused.stderr
    )
    assert server.stats()["requests"] == 0
    remote = run_cli(*base, "--no-extract", "--json-out", tmp_path / "remote.json")
    assert remote.exit_code == 0, remote.output
    local = run_cli("canary", FIXTURE_MODEL, "-c", canaries, "--no-extract", "--json-out", tmp_path / "local.json")
    assert local.exit_code == 0, local.output
    remote_doc, local_doc = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("remote", "local"))
    assert remote_doc["model"]["endpoint"] == server.endpoint and remote_doc["model"]["path"] is None
    for r, lo in zip(remote_doc["canaries"], local_doc["canaries"]):
        assert r["exposure"] == pytest.approx(lo["exposure"], abs=1e-6)

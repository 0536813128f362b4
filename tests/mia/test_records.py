"""privaudit/mia/records.py: per-example rows (--per-example), the most exposed members (--top), --redact-texts.

The end-to-end tests audit ``fixtures/models/intent-tiny`` with ``--attack loss,confidence`` through the command line;
the audit itself is memoised (``tests/conftest.py``), so each distinct request is scored once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from privaudit.cli.app import app
from privaudit.mia.records import flag_fpr, strongest_attack, text_sha256
from privaudit.mia.run import AttackResult
from privaudit.stats.metrics import evaluate

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
MEMBERS = ROOT / "fixtures" / "data" / "members.jsonl"
NON_MEMBERS = ROOT / "fixtures" / "data" / "non_members.jsonl"
AUDIT = ["mia", str(MODEL), "--members", str(MEMBERS), "--non-members", str(NON_MEMBERS), "--attack", "loss,confidence"]
SLICED = [*AUDIT, "--slice", "class", "--slice", "correctness", "--slice-min", "30"]

ROW_SCHEMA = json.loads((ROOT / "docs" / "schema-per-example.json").read_text(encoding="utf-8"))
MIA_SCHEMA = json.loads((ROOT / "docs" / "schema-mia.json").read_text(encoding="utf-8"))
runner = CliRunner()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def audited(memoised_run_mia, tmp_path):
    """The sliced fixture audit with --per-example, --json-out and --report: (rows, document, html)."""
    rows, doc, page = tmp_path / "rows.jsonl", tmp_path / "audit.json", tmp_path / "audit.html"
    result = runner.invoke(app, [*SLICED, "--per-example", str(rows), "--json-out", str(doc), "--report", str(page)])
    assert result.exit_code == 0, result.output
    return _lines(rows), json.loads(doc.read_text(encoding="utf-8")), page.read_text(encoding="utf-8")


def test_per_example_rows_round_trip_and_match_the_schema(audited):
    rows, document, _ = audited
    validator = jsonschema.Draft202012Validator(ROW_SCHEMA)
    for row in rows:
        validator.validate(row)
    assert len(rows) == document["n_members"] + document["n_non_members"] == 2000
    inputs = {
        "members": [json.loads(line) for line in MEMBERS.read_text(encoding="utf-8").splitlines()],
        "non_members": [json.loads(line) for line in NON_MEMBERS.read_text(encoding="utf-8").splitlines()],
    }
    for row in rows:
        record = inputs[row["set"]][row["index"]]
        assert row["text"] == record["text"] and row["label"] == record["label"]
        assert row["sha256"] == hashlib.sha256(record["text"].encode("utf-8")).hexdigest()
        assert row["member"] == (row["set"] == "members")
        assert row["file"] == str(MEMBERS if row["member"] else NON_MEMBERS)
        assert set(row["scores"]) == set(row["flag_fpr"]) == {"loss", "confidence"}
    # Each file's examples appear once each, in file order.
    assert [r["index"] for r in rows if r["member"]] == list(range(1000))
    assert [r["index"] for r in rows if not r["member"]] == list(range(1000))


def test_flag_fpr_is_the_share_of_non_members_at_or_above(audited):
    rows, _, _ = audited
    for attack in ("loss", "confidence"):
        out = np.array([r["scores"][attack] for r in rows if not r["member"]])
        for row in rows[::97]:
            assert row["flag_fpr"][attack] == pytest.approx(np.mean(out >= row["scores"][attack]))


def test_the_scores_are_the_audits_own(audited):
    """AUC from the per-example scores equals the report's: the rows come from the same single scoring pass."""
    rows, document, _ = audited
    member = np.array([r["member"] for r in rows])
    for attack in document["attacks"]:
        scores = np.array([r["scores"][attack["name"]] for r in rows])
        assert evaluate(scores, member).auc.value == pytest.approx(attack["auc"]["value"], abs=1e-12)


def test_top_members_are_sorted_and_their_fprs_match_the_rows(audited):
    rows, document, page = audited
    jsonschema.Draft202012Validator(MIA_SCHEMA).validate(document)
    top = document["most_exposed"]
    by_tpr = {a["name"]: next(t["tpr"] for t in a["tpr_at_fpr"] if t["fpr"] == 0.01) for a in document["attacks"]}
    assert by_tpr[top["attack"]] == max(by_tpr.values())
    assert top["n"] == 20 and [m["rank"] for m in top["members"]] == list(range(1, 21))
    scores = [m["score"] for m in top["members"]]
    assert scores == sorted(scores, reverse=True)
    by_place = {(r["set"], r["index"]): r for r in rows}
    member_scores = sorted((r["scores"][top["attack"]] for r in rows if r["member"]), reverse=True)
    assert scores == member_scores[:20]
    for m in top["members"]:
        row = by_place[(m["set"], m["index"])]
        assert row["member"] and m["sha256"] == row["sha256"] and m["text"] == row["text"]
        assert m["score"] == row["scores"][top["attack"]]
        assert m["flag_fpr"] == row["flag_fpr"][top["attack"]]
    assert "Most exposed members (20)" in page
    assert top["members"][0]["sha256"][:12] in page


def test_top_zero_leaves_the_list_out(memoised_run_mia, tmp_path):
    doc = tmp_path / "audit.json"
    result = runner.invoke(app, [*SLICED, "--top", "0", "--json-out", str(doc)])
    assert result.exit_code == 0, result.output
    assert "most_exposed" not in json.loads(doc.read_text(encoding="utf-8"))


def test_redact_texts_leaves_no_text_in_any_output(memoised_run_mia, tmp_path):
    out = {name: tmp_path / name for name in ("rows.jsonl", "audit.json", "audit.html", "summary.md", "table.txt")}
    result = runner.invoke(
        app,
        [
            *SLICED,
            "--redact-texts",
            "--per-example",
            str(out["rows.jsonl"]),
            "--json-out",
            str(out["audit.json"]),
            "--report",
            str(out["audit.html"]),
            "--markdown-out",
            str(out["summary.md"]),
            "-o",
            str(out["table.txt"]),
        ],
    )
    assert result.exit_code == 0, result.output
    written = {name: path.read_text(encoding="utf-8") for name, path in out.items()}
    written["stdout"] = result.output
    texts = [json.loads(line)["text"] for f in (MEMBERS, NON_MEMBERS) for line in f.read_text().splitlines()]
    for name, content in written.items():
        leaked = [t for t in texts if t in content]
        assert not leaked, f"{name} holds {len(leaked)} texts, e.g. {leaked[:1]}"
    rows = _lines(out["rows.jsonl"])
    assert all("text" not in row for row in rows)
    assert rows[0]["sha256"] == text_sha256(texts[0])
    assert all("text" not in m for m in json.loads(written["audit.json"])["most_exposed"]["members"])


def test_a_failed_audit_writes_no_per_example_file(tmp_path):
    rows = tmp_path / "rows.jsonl"
    result = runner.invoke(app, [*SLICED[:2], "--members", str(tmp_path / "missing.jsonl"), "--per-example", str(rows)])
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_per_example_file_exits_2_and_leaves_nothing_behind(memoised_run_mia, tmp_path):
    (tmp_path / "rows.jsonl").mkdir()  # a directory where the file should go: os.replace fails
    result = runner.invoke(app, [*SLICED, "--per-example", str(tmp_path / "rows.jsonl")])
    assert result.exit_code == 2
    assert "cannot write the per-example file" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_flag_fpr_known_answers():
    scores = np.array([5.0, 1.0, 3.0, 2.0, 3.0, 0.0])
    member = np.array([True, True, True, False, False, False])  # non-members score 2, 3, 0
    np.testing.assert_allclose(flag_fpr(scores, member), [0, 2 / 3, 1 / 3, 2 / 3, 1 / 3, 1])


def _attack(name: str, shift: float, n_out: int) -> AttackResult:
    rng = np.random.default_rng(len(name))
    member = np.r_[np.ones(200, bool), np.zeros(n_out, bool)]
    scores = rng.normal(size=member.size) + shift * member
    return AttackResult(name, "", {}, evaluate(scores, member, n_bootstrap=50), scores)


def test_strongest_attack_by_tpr_at_1pct_then_auc():
    weak, strong = _attack("weak", 0.2, 200), _attack("strong", 2.0, 200)
    assert strongest_attack([weak, strong]).name == "strong"
    assert strongest_attack([]) is None
    # 50 non-members cannot resolve 1% FPR: AUC decides.
    few_weak, few_strong = _attack("weak", 0.2, 50), _attack("strong", 2.0, 50)
    assert not few_strong.metrics.tpr_at_fpr[1].supported
    assert strongest_attack([few_weak, few_strong]).name == "strong"

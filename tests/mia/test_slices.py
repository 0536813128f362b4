"""privaudit/mia/slices.py and slice subjects of the gate: counts, per-slice AUCs against sklearn, too-small slices.

The end-to-end tests audit ``fixtures/models/intent-tiny`` with ``--attack loss,confidence --slice class --slice
correctness --slice-min 30`` through the command line; the audit is memoised (``tests/conftest.py``). On the
fixture the target model classifies 20 members wrongly, so ``correctness=wrong`` is below the minimum of 30.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from privaudit.cli.app import app
from privaudit.errors import PrivauditError
from privaudit.gate.gate import parse_threshold, run_gate
from privaudit.gate.measurements import measurements_from_mia_dict, mia_metrics
from privaudit.gate.slices import MiaSubjects
from privaudit.mia.records import Examples
from privaudit.mia.run import AttackResult
from privaudit.mia.slices import compute_slices
from privaudit.stats.metrics import evaluate

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "fixtures" / "models" / "intent-tiny"
MEMBERS = ROOT / "fixtures" / "data" / "members.jsonl"
NON_MEMBERS = ROOT / "fixtures" / "data" / "non_members.jsonl"
AUDIT = ["mia", str(MODEL), "--members", str(MEMBERS), "--non-members", str(NON_MEMBERS), "--attack", "loss,confidence"]
SLICED = [*AUDIT, "--slice", "class", "--slice", "correctness", "--slice-min", "30"]
MIA_SCHEMA = json.loads((ROOT / "docs" / "schema-mia.json").read_text(encoding="utf-8"))
runner = CliRunner()


@pytest.fixture
def sliced(memoised_run_mia, tmp_path):
    """The sliced fixture audit: (JSON document, per-example rows, HTML page, terminal output)."""
    doc, rows, page = tmp_path / "audit.json", tmp_path / "rows.jsonl", tmp_path / "audit.html"
    result = runner.invoke(app, [*SLICED, "--json-out", str(doc), "--per-example", str(rows), "--report", str(page)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in rows.read_text(encoding="utf-8").splitlines()]
    return json.loads(doc.read_text(encoding="utf-8")), lines, page.read_text(encoding="utf-8"), result.output


def _gate(*flags: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, [*SLICED, "--format", "json", *flags])
    document = json.loads(result.stdout) if result.exit_code in (0, 1) else {}
    return result.exit_code, document.get("gate", {}), result.output


def test_slices_are_in_the_json_and_match_the_schema(sliced):
    document, _, page, output = sliced
    jsonschema.Draft202012Validator(MIA_SCHEMA).validate(document)
    slices = document["slices"]
    assert slices["kinds"] == ["class", "correctness"] and slices["min_per_side"] == 30
    assert len([s for s in slices["slices"] if s["kind"] == "class"]) == 20  # intent-tiny's 20 intents
    assert "slices by class" in output and "slices by correctness" in output
    assert "<h2>Slices</h2>" in page and "transfer_money" in page


def test_slice_counts_add_up_to_the_whole(sliced):
    document, _, _, _ = sliced
    for kind in ("class", "correctness"):
        pieces = [s for s in document["slices"]["slices"] if s["kind"] == kind]
        assert sum(s["n_members"] for s in pieces) == document["n_members"] == 1000
        assert sum(s["n_non_members"] for s in pieces) == document["n_non_members"] == 1000


def test_per_class_auc_equals_sklearn_on_the_subset(sliced):
    document, rows, _, _ = sliced
    aucs = []
    for piece in (s for s in document["slices"]["slices"] if s["kind"] == "class"):
        subset = [r for r in rows if r["label"] == piece["value"]]
        member = [r["member"] for r in subset]
        assert (sum(member), len(member) - sum(member)) == (piece["n_members"], piece["n_non_members"])
        for attack in piece["attacks"]:
            expected = roc_auc_score(member, [r["scores"][attack["name"]] for r in subset])
            assert attack["auc"]["value"] == pytest.approx(expected, abs=1e-12)
            assert attack["auc"]["low"] <= attack["auc"]["value"] <= attack["auc"]["high"]
            aucs.append(attack["auc"]["value"])
    assert 0.55 < min(aucs) < max(aucs) < 0.9  # measured 0.587 (turn_on_lights) to 0.833 (search_creative_work)


def test_correctness_slices_follow_the_argmax(sliced):
    document, rows, _, _ = sliced
    by_value = {s["value"]: s for s in document["slices"]["slices"] if s["kind"] == "correctness"}
    wrong = [r for r in rows if r["correct"] is False]
    assert by_value["wrong"]["n_members"] == sum(r["member"] for r in wrong) == 20
    assert by_value["wrong"]["n_non_members"] == len(wrong) - 20


def test_a_too_small_slice_is_marked_not_dropped(sliced):
    document, _, page, output = sliced
    wrong = next(s for s in document["slices"]["slices"] if s["subject"] == "correctness=wrong")
    assert wrong["measured"] is False and wrong["attacks"] == []
    assert wrong["note"] == "too few examples: 20 members, 258 non-members (at least 30 a side)"
    assert "too few examples" in output
    assert "too few examples: 20 members, 258 non-members" in page


def test_a_slice_threshold_breaches_and_passes(memoised_run_mia):
    # pay_bill's LOSS AUC on the fixture is 0.5995.
    code, gate, _ = _gate("--fail-above", "class=pay_bill/loss:auc=0.55")
    assert code == 1
    (check,) = gate["checks"]
    assert (check["subject"], check["status"]) == ("class=pay_bill/loss", "failed")
    assert check["value"] == pytest.approx(0.5995, abs=1e-3)
    code, gate, _ = _gate("--fail-above", "class=pay_bill/loss:auc=0.65")
    assert code == 0 and gate["checks"][0]["status"] == "passed"


def test_a_slice_without_attack_gates_the_strongest_value(memoised_run_mia):
    code, gate, _ = _gate("--fail-above", "class=pay_bill:auc=0.55", "--fail-above", "class=*:tpr@10%fpr=0.9")
    assert code == 1
    first, *pattern = gate["checks"]
    assert (first["subject"], first["status"]) == ("class=pay_bill", "failed")
    assert len(pattern) == 20 and all(c["status"] == "passed" for c in pattern)


def test_the_gate_skips_a_too_small_slice(memoised_run_mia):
    code, gate, _ = _gate("--fail-above", "correctness=wrong:auc=0.5", "--fail-above", "correctness=wrong/loss:auc=0.5")
    assert code == 0
    assert [c["status"] for c in gate["checks"]] == ["skipped", "skipped"]
    assert "too few examples: 20 members" in gate["checks"][0]["message"]


def test_a_threshold_without_subject_leaves_slices_alone(memoised_run_mia):
    code, gate, _ = _gate("--fail-above", "auc=0.99")
    assert code == 0
    assert [c["subject"] for c in gate["checks"]] == ["loss", "confidence"]


def test_baselines_work_on_slices(memoised_run_mia, tmp_path):
    saved = tmp_path / "baseline.json"
    assert _gate("--save-baseline", str(saved))[0] == 0
    code, gate, _ = _gate("--baseline", str(saved), "--max-increase", "class=pay_bill/loss:auc=0")
    assert code == 0
    (check,) = gate["checks"]
    assert check["status"] == "passed" and check["baseline"] == pytest.approx(check["value"])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--slice", "region"], "--slice 'region' is unknown; choose from: class, correctness"),
        (["--fail-above", "correctness=maybe:auc=0.6"], "unknown attack 'correctness=maybe'"),
    ],
)
def test_bad_slice_flags_exit_2_before_the_audit(flags, expected):
    result = runner.invoke(app, [*SLICED, *flags])
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())


def test_a_slice_subject_needs_its_slice_kind():
    result = runner.invoke(app, [*AUDIT, "--fail-above", "class=pay_bill:auc=0.6"])
    assert result.exit_code == 2
    assert "needs --slice class" in " ".join(result.output.split())


def test_an_unknown_class_exits_2_naming_it(memoised_run_mia):
    code, _, output = _gate("--fail-above", "class=pay_bils:auc=0.6")
    assert code == 2
    assert "no slice 'class=pay_bils'" in " ".join(output.split())


def _synthetic(n: int = 400, seed: int = 0) -> tuple[Examples, np.ndarray, list[AttackResult]]:
    rng = np.random.default_rng(seed)
    member = np.r_[np.ones(n // 2, bool), np.zeros(n // 2, bool)]
    labels = rng.choice(["a", "b", "c"], size=n, p=[0.45, 0.45, 0.1])
    correct = rng.random(n) < np.where(member, 0.9, 0.7)
    scores = rng.normal(size=n) + member * (labels == "a")  # only class a leaks
    examples = Examples(
        sets=tuple("members" if m else "non_members" for m in member),
        files=("f",) * n,
        index=np.arange(n),
        labels=tuple(labels),
        correct=correct,
    )
    attack = AttackResult("loss", "", {}, evaluate(scores, member, n_bootstrap=50), scores)
    return examples, member, [attack]


def test_compute_slices_is_evaluate_on_each_subset():
    examples, member, attacks = _synthetic()
    slices = compute_slices(["class", "correctness"], examples=examples, is_member=member, attacks=attacks, seed=3)
    labels = np.array(examples.labels)
    for piece in slices.of_kind("class"):
        mask = labels == piece.value
        if not piece.measured:
            assert min(piece.n_members, piece.n_non_members) < 20 and piece.attacks == ()
            continue
        expected = evaluate(attacks[0].scores[mask], member[mask], seed=3)
        assert piece.attacks[0].metrics == expected
    by_value = {s.value: s for s in slices.slices}
    assert by_value["a"].attacks[0].metrics.auc.value > by_value["b"].attacks[0].metrics.auc.value + 0.15
    assert {s.value for s in slices.of_kind("correctness")} == {"correct", "wrong"}


def test_same_seed_same_slices_and_the_minimum_is_checked():
    examples, member, attacks = _synthetic()
    one = compute_slices(["class"], examples=examples, is_member=member, attacks=attacks, seed=1)
    two = compute_slices(["class"], examples=examples, is_member=member, attacks=attacks, seed=1)
    assert json.dumps(one.to_dict()) == json.dumps(two.to_dict())
    with pytest.raises(PrivauditError, match="--slice-min must be at least 2"):
        compute_slices(["class"], examples=examples, is_member=member, attacks=attacks, min_per_side=1)


def test_same_seed_same_output_end_to_end(tmp_path):
    """Two real audits (no memo) from --scores with logits: the same bytes in every output, slices included."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(300):
        member = i < 150
        logits = rng.normal(size=4) + (1.5 * np.eye(4)[i % 4] if member else 0)
        records.append({"member": int(member), "label": i % 4, "logits": logits.round(6).tolist()})
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    outputs = []
    for run in ("a", "b"):
        args = ["mia", "--scores", str(scores), "--attack", "loss,confidence", "--slice", "class"]
        args += ["--slice", "correctness", "--per-example", str(tmp_path / f"{run}.jsonl"), "--format", "json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append((result.stdout, (tmp_path / f"{run}.jsonl").read_text(encoding="utf-8")))
    assert outputs[0] == outputs[1]
    document = json.loads(outputs[0][0])
    assert [s["subject"] for s in document["slices"]["slices"]][:4] == [f"class={i}" for i in range(4)]
    assert json.loads(outputs[0][1].splitlines()[0])["sha256"] is None


def test_slice_measurements_cover_every_metric_and_attack(sliced):
    document, _, _, _ = sliced
    measured = {(m.subject, m.metric): m for m in measurements_from_mia_dict(document)}
    for metric in mia_metrics():
        for subject in ("class=pay_bill", "class=pay_bill/loss", "correctness=wrong", "correctness=wrong/confidence"):
            assert (subject, metric) in measured
    assert measured[("correctness=wrong", "auc")].value is None
    subjects = MiaSubjects(["loss", "confidence"], slice_kinds=["class"])
    assert "class=x/loss" in subjects and "class=*" in subjects and "correctness=wrong" not in subjects
    threshold = parse_threshold("class=*/loss:auc=0.7", metrics=mia_metrics(), subjects=subjects)
    checks = run_gate(list(measured.values()), [threshold]).checks
    assert len(checks) == 20 and all(c.subject.endswith("/loss") for c in checks)


def test_slices_from_a_config_file(memoised_run_mia, tmp_path):
    config = tmp_path / "privaudit.toml"
    config.write_text('[mia]\nslice = ["class", "correctness"]\nslice_min = 30\n', encoding="utf-8")
    result = runner.invoke(app, [*AUDIT, "--config", str(config), "--format", "json"])
    assert result.exit_code == 0, result.output
    slices = json.loads(result.stdout)["slices"]
    assert slices["kinds"] == ["class", "correctness"] and slices["min_per_side"] == 30


def test_a_slice_breach_reaches_the_ci_formats(memoised_run_mia, tmp_path):
    sarif, junit = tmp_path / "gate.sarif", tmp_path / "gate.xml"
    flags = ["--fail-above", "class=pay_bill/loss:auc=0.55", "--sarif-out", str(sarif), "--junit-out", str(junit)]
    result = runner.invoke(app, [*SLICED, "--format", "github", *flags])
    assert result.exit_code == 1
    assert "class=pay_bill/loss: auc = 0.5995" in result.stdout
    (found,) = json.loads(sarif.read_text(encoding="utf-8"))["runs"][0]["results"]
    assert "class=pay_bill/loss" in found["message"]["text"]
    assert "class=pay_bill/loss" in junit.read_text(encoding="utf-8")

"""Tests for privaudit.gate.gate (thresholds, checks, verdict) and privaudit.gate.baseline, on audits built from synthetic scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privaudit.errors import PrivauditError
from privaudit.gate.baseline import SCHEMA as BASELINE_SCHEMA
from privaudit.gate.baseline import baseline_document, baseline_from_result, load_baseline
from privaudit.gate.gate import (
    Threshold,
    canonical_metric,
    epsilon_claim,
    merge_thresholds,
    parse_threshold,
    run_gate,
    threshold_from_key,
)
from privaudit.gate.measurements import (
    CANARY_METRICS,
    Measurement,
    mia_measurements,
    mia_metrics,
    tpr_metric,
)
from privaudit.mia.run import AttackResult, MiaResult
from privaudit.stats.metrics import evaluate

N_PER_SIDE = 200  # 200 non-members cannot resolve an FPR of 0.1%: that TPR is unsupported
METRICS = mia_metrics()
SUBJECTS = ("loss", "lira-offline", "rmia")


def make_result(*, epsilon: float | None = 8.0, strengths=(("loss", 1.5), ("lira-offline", 0.2))) -> MiaResult:
    """Attacks of known strength on 200 members and 200 non-members: member scores shifted by ``mu``."""
    is_member = np.r_[np.ones(N_PER_SIDE, bool), np.zeros(N_PER_SIDE, bool)]
    attacks = []
    for i, (name, mu) in enumerate(strengths):
        scores = np.random.default_rng(i).normal(size=is_member.size) + mu * is_member
        metrics = evaluate(scores, is_member, delta=1e-5, n_bootstrap=200, seed=i)
        attacks.append(AttackResult(name, f"{name}, synthetic", {}, metrics, scores))
    return MiaResult(
        model={"path": "models/target", "fingerprint": "ab" * 32},
        seed=0,
        theoretical_epsilon=epsilon,
        delta=1e-5,
        n_members=N_PER_SIDE,
        n_non_members=N_PER_SIDE,
        n_reference_models=0,
        attacks=attacks,
        is_member=is_member,
    )


@pytest.fixture(scope="module")
def result() -> MiaResult:
    return make_result()


@pytest.fixture(scope="module")
def measured(result) -> dict[tuple[str, str], Measurement]:
    return {(m.subject, m.metric): m for m in mia_measurements(result)}


def fail_above(*specs: str) -> list[Threshold]:
    return [parse_threshold(s, metrics=METRICS, subjects=SUBJECTS, source="--fail-above") for s in specs]


# --- metric names and measurements ----------------------------------------------------------------------------


def test_metric_names():
    assert [tpr_metric(f) for f in (0.001, 0.01, 0.1, 0.05)] == ["tpr@0.1%fpr", "tpr@1%fpr", "tpr@10%fpr", "tpr@5%fpr"]
    assert METRICS == ("auc", "advantage", "epsilon_lb", "tpr@0.1%fpr", "tpr@1%fpr", "tpr@10%fpr")
    assert canonical_metric(" TPR@1.0%FPR ") == "tpr@1%fpr" and canonical_metric("tpr@0.10%fpr") == "tpr@0.1%fpr"
    assert canonical_metric("AUC") == "auc"


def test_mia_measurements_mirror_the_metrics(result, measured):
    assert len(measured) == len(result.attacks) * len(METRICS)
    loss = result.attacks[0].metrics
    auc = measured[("loss", "auc")]
    assert (auc.value, auc.low, auc.high, auc.confidence) == (loss.auc.value, loss.auc.low, loss.auc.high, 0.95)
    assert measured[("loss", "tpr@1%fpr")].value == loss.tpr_at_fpr[1].tpr
    assert measured[("loss", "advantage")].value == loss.advantage
    assert measured[("loss", "epsilon_lb")].value == loss.epsilon_lower_bound
    unsupported = measured[("loss", "tpr@0.1%fpr")]
    assert unsupported.value is None and "200 non-members" in unsupported.note
    assert auc.describe() == f"{auc.value:.4g} [95% CI {auc.low:.4g}, {auc.high:.4g}]"
    assert unsupported.describe() == "not measured"


# --- parsing --------------------------------------------------------------------------------------------------


def test_parse_threshold_forms():
    t = parse_threshold("auc=0.6", metrics=METRICS)
    assert (t.kind, t.subject, t.metric, t.limit, t.key) == ("fail_above", None, "auc", 0.6, "auc")
    t = parse_threshold("lira-offline:TPR@1%FPR = 0.05", metrics=METRICS, subjects=SUBJECTS)
    assert (t.subject, t.metric, t.limit, t.key) == ("lira-offline", "tpr@1%fpr", 0.05, "lira-offline:tpr@1%fpr")
    assert parse_threshold("tpr@0.1%fpr=0.01", metrics=METRICS).metric == "tpr@0.1%fpr"
    assert parse_threshold("epsilon_lb=2", metrics=METRICS).limit == 2.0
    assert parse_threshold("auc=0", kind="max_increase", metrics=METRICS).kind == "max_increase"
    assert threshold_from_key("exposure", 10, metrics=CANARY_METRICS).metric == "exposure"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("aucc=0.6", r"unknown metric 'aucc'.*valid metrics: auc, advantage, epsilon_lb, tpr@0.1%fpr"),
        ("tpr@5%fpr=0.1", r"unknown metric 'tpr@5%fpr'"),
        ("exposure=3", r"unknown metric 'exposure'"),
        ("lira-ofline:auc=0.6", r"unknown attack 'lira-ofline'.*choose from: loss, lira-offline, rmia"),
        ("auc", r"'auc' is not METRIC=VALUE"),
        ("auc=", r"is not METRIC=VALUE"),
        ("auc=high", r"'high' is not a number"),
        ("auc=nan", r"needs a finite number"),
    ],
)
def test_parse_threshold_errors_name_the_source(spec, message):
    with pytest.raises(PrivauditError, match=message) as err:
        parse_threshold(spec, metrics=METRICS, subjects=SUBJECTS, source="--fail-above")
    assert str(err.value).startswith("--fail-above: ")


def test_max_increase_must_not_be_negative():
    with pytest.raises(PrivauditError, match=r"allowed increase of auc must be in \[0, 1\]"):
        parse_threshold("auc=-0.1", kind="max_increase", metrics=METRICS)


def test_merge_later_source_wins_per_key():
    from_file = [
        threshold_from_key(k, v, metrics=METRICS, source="file") for k, v in {"auc": 0.6, "advantage": 0.2}.items()
    ]
    merged = merge_thresholds(from_file, fail_above("auc=0.9", "loss:auc=0.5"))
    assert {(t.key, t.limit, t.source) for t in merged} == {
        ("advantage", 0.2, "file"),
        ("auc", 0.9, "--fail-above"),
        ("loss:auc", 0.5, "--fail-above"),
    }


# --- the gate -------------------------------------------------------------------------------------------------


def test_breach_and_pass(result, measured):
    gate = run_gate(mia_measurements(result), fail_above("auc=0.6"))
    status = {c.subject: c.status for c in gate.checks}
    assert status == {"loss": "failed", "lira-offline": "passed"}
    assert (gate.verdict, gate.exit_code) == ("fail", 1)
    (breach,) = gate.failed
    auc = measured[("loss", "auc")]
    # The message names the metric, its value with interval, and the threshold.
    for text in ("loss: auc", f"{auc.value:.4g}", f"{auc.low:.4g}", f"{auc.high:.4g}", "0.6", "--fail-above"):
        assert text in breach.message
    assert gate.summary() == "fail: 1 of 2 checks failed"


def test_no_threshold_passes_and_says_so(result):
    gate = run_gate(mia_measurements(result), [])
    assert (gate.verdict, gate.exit_code, gate.checks) == ("pass", 0, ())
    assert gate.summary() == "pass: no thresholds set"


def test_value_equal_to_the_limit_passes(measured):
    m = measured[("loss", "auc")]
    gate = run_gate([m], [Threshold("fail_above", "auc", m.value)])
    assert gate.verdict == "pass"


def test_exit_zero_keeps_the_verdict(result):
    gate = run_gate(mia_measurements(result), fail_above("auc=0.5"), exit_zero=True)
    assert (gate.verdict, gate.exit_code) == ("fail", 0)
    assert "--exit-zero" in gate.summary()


def test_attack_threshold_overrides_the_general_one(result):
    gate = run_gate(mia_measurements(result), fail_above("auc=0.6", "loss:auc=0.99"))
    checks = {(c.subject, c.threshold.key): c.status for c in gate.checks}
    assert checks == {("lira-offline", "auc"): "passed", ("loss", "loss:auc"): "passed"}


def test_unsupported_tpr_is_skipped_not_passed(result):
    gate = run_gate(mia_measurements(result), fail_above("tpr@0.1%fpr=0.0"))
    assert [c.status for c in gate.checks] == ["skipped", "skipped"]
    assert all("not gated" in c.message and "non-members" in c.message for c in gate.checks)
    assert gate.verdict == "pass" and gate.summary() == "pass: 0 checks passed, 2 skipped"


def test_threshold_for_an_attack_that_did_not_run_is_skipped(result):
    gate = run_gate(mia_measurements(result), fail_above("rmia:auc=0.5"))
    (check,) = gate.checks
    assert (check.subject, check.status) == ("rmia", "skipped") and "did not run" in check.message


def test_epsilon_claim(result):
    measurements = mia_measurements(result)
    bound = max(m.value for m in measurements if m.metric == "epsilon_lb")
    assert bound > 0.1
    violated = run_gate(measurements, [epsilon_claim(0.1)])
    assert violated.verdict == "fail" and "exceeds the theoretical epsilon 0.1" in violated.failed[0].message
    assert run_gate(measurements, [epsilon_claim(bound + 1)]).verdict == "pass"
    no_dp = run_gate(measurements, [epsilon_claim(None)])
    assert {c.status for c in no_dp.checks} == {"skipped"} and "no theoretical epsilon" in no_dp.checks[0].message
    assert no_dp.checks[0].name == "epsilon_lb <= theoretical epsilon"


def test_canary_measurements_use_the_same_gate():
    measurements = [
        Measurement("pin-code", "exposure", 12.5),
        Measurement("pin-code", "extracted", 0.0),
        Measurement("audit", "one_run_epsilon_lb", 1.2),
    ]
    thresholds = [
        threshold_from_key("exposure", 10, metrics=CANARY_METRICS),
        epsilon_claim(1.0, metric="one_run_epsilon_lb"),
    ]
    gate = run_gate(measurements, thresholds)
    assert [(c.subject, c.metric, c.status) for c in gate.checks] == [
        ("pin-code", "exposure", "failed"),
        ("audit", "one_run_epsilon_lb", "failed"),
    ]


def test_max_increase_against_a_baseline(result):
    now = mia_measurements(result)
    auc = next(m for m in now if (m.subject, m.metric) == ("loss", "auc"))
    before = [Measurement("loss", "auc", auc.value - 0.05), Measurement("lira-offline", "auc", 0.99)]
    thresholds = [parse_threshold("auc=0.02", kind="max_increase", metrics=METRICS, source="--max-increase")]
    gate = run_gate(now, thresholds, baseline=before, baseline_name="base.json")
    checks = {c.subject: c for c in gate.checks}
    assert checks["loss"].status == "failed" and "rose more than the allowed 0.02" in checks["loss"].message
    assert checks["loss"].baseline == pytest.approx(auc.value - 0.05)
    assert checks["lira-offline"].status == "passed"  # it went down
    loose = [parse_threshold("auc=0.1", kind="max_increase", metrics=METRICS)]
    assert run_gate(now, loose, baseline=before).verdict == "pass"
    missing = run_gate(now, [parse_threshold("advantage=0", kind="max_increase", metrics=METRICS)], baseline=before)
    assert {c.status for c in missing.checks} == {"skipped"} and "baseline has no value" in missing.checks[0].message
    with pytest.raises(PrivauditError, match="needs --baseline"):
        run_gate(now, thresholds)


def test_gate_to_dict(result):
    gate = run_gate(mia_measurements(result), [*fail_above("auc=0.6", "tpr@0.1%fpr=0.1"), epsilon_claim(8.0)])
    d = gate.to_dict()
    assert (d["verdict"], d["exit_code"], d["exit_zero"], d["baseline"]) == ("fail", 1, False, None)
    assert d["summary"] == {"passed": 3, "failed": 1, "skipped": 2}
    assert len(d["thresholds"]) == 3 and len(d["checks"]) == 6
    assert {c["status"] for c in d["checks"]} == {"passed", "failed", "skipped"}
    json.dumps(d, allow_nan=False)


# --- baselines ------------------------------------------------------------------------------------------------


def test_baseline_round_trip(tmp_path, result):
    document = baseline_from_result(result.to_dict())
    assert document["schema"] == BASELINE_SCHEMA and document["source"]["schema"] == "privaudit.mia/1"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    loaded = load_baseline(path)
    assert [(m.subject, m.metric, m.value) for m in loaded] == [
        (m.subject, m.metric, m.value) for m in mia_measurements(result)
    ]


def test_baseline_errors(tmp_path, result):
    with pytest.raises(PrivauditError, match="cannot make a baseline.*schema 'nope'"):
        baseline_from_result({"schema": "nope"})
    result_file = tmp_path / "result.json"
    result_file.write_text(json.dumps(result.to_dict()))
    with pytest.raises(PrivauditError, match="not a privaudit.baseline/1 baseline.*privaudit baseline save"):
        load_baseline(result_file)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(baseline_document([], source={}) | {"measurements": [{"subject": "loss"}]}))
    with pytest.raises(PrivauditError, match="measurement 0 is malformed"):
        load_baseline(bad)
    bad.write_text("{")
    with pytest.raises(PrivauditError, match="not valid JSON"):
        load_baseline(bad)
    with pytest.raises(PrivauditError, match="cannot read"):
        load_baseline(tmp_path / "missing.json")


def test_one_run_bound_measurements_of_dp_audit_and_canary_documents():
    from privaudit.gate.measurements import measurements_from_canary_dict, measurements_from_dp_audit_dict
    from privaudit.stats.auditor import CanaryScoreAuditor

    rng = np.random.default_rng(0)
    bounds = CanaryScoreAuditor(rng.normal(2.0, 1.0, 500), rng.normal(0.0, 1.0, 500)).audit(0.05, 1e-5).to_dict()
    document = {**bounds, "bounds": {k: bounds[k] for k in ("eps_delta", "gaussian", "steinke")}}
    measured = {m.metric: m for m in measurements_from_dp_audit_dict(document)}
    assert measured["fdp_epsilon_lb"].value == bounds["eps_delta"]["epsilon"] > 0
    assert measured["gdp_mu_lb"].value == bounds["gaussian"]["mu"] > 0
    assert {m.subject for m in measured.values()} == {"one-run"} and measured["steinke_epsilon_lb"].confidence == 0.95
    with pytest.raises(PrivauditError, match="privaudit.dp-audit/1"):
        measurements_from_dp_audit_dict({"alpha": 0.05})
    # A canary document of an older privaudit has one_run but no one_run_bounds: those checks skip, with a note.
    canary = {"canaries": [], "one_run": {"p": 0.05, "epsilon_lower_bound": 1.0}}
    old = {m.metric: m for m in measurements_from_canary_dict(canary)}
    assert old["one_run_epsilon_lb"].value == 1.0
    assert old["fdp_epsilon_lb"].value is None and "older privaudit" in old["fdp_epsilon_lb"].note
    new = {m.metric: m for m in measurements_from_canary_dict({**canary, "one_run_bounds": bounds})}
    assert new["gdp_epsilon_lb"].value == bounds["gaussian"]["epsilon"]
    assert set(new) == set(CANARY_METRICS)

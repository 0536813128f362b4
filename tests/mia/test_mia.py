"""privaudit/mia/run.py end to end on the bundled fixtures, and through --scores with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats
from typer.testing import CliRunner

from privaudit import attacks
from privaudit.cli.app import app
from privaudit.errors import PrivauditError
from privaudit.mia.run import MiaRequest, run_mia

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "fixtures" / "data"
TINY = ROOT / "fixtures" / "models" / "intent-tiny"
TINY_DP = ROOT / "fixtures" / "models" / "intent-tiny-dp"


def _request(model: Path = TINY, **kw) -> MiaRequest:
    return MiaRequest(model_dir=model, members=DATA / "members.jsonl", non_members=DATA / "non_members.jsonl", **kw)


def _tpr_at_1pct(result, name: str) -> float:
    attack = next(a for a in result.attacks if a.name == name)
    return next(t.tpr for t in attack.metrics.tpr_at_fpr if t.fpr == 0.01)


@pytest.fixture(scope="module")
def reference_audit(tmp_path_factory):
    """LOSS, LiRA (offline) and RMIA with 2 reference models on intent-tiny: trained once for the module."""
    cache = tmp_path_factory.mktemp("reference-cache")
    request = _request(
        attacks="loss,lira-offline,rmia",
        population=DATA / "population.jsonl",
        reference_models=2,
        cache_dir=cache,
    )
    return request, run_mia(request)


def test_loss_attack_detects_memorisation_on_intent_tiny():
    result = run_mia(_request(attacks="loss"))
    auc = result.attacks[0].metrics.auc
    # Measured 0.70 on the fixture: the lower end of the 95% interval must sit clearly above chance.
    assert auc.low > 0.6
    assert result.theoretical_epsilon is None  # trained without DP


def test_lira_and_rmia_beat_loss_at_low_fpr(reference_audit):
    _, result = reference_audit
    loss = _tpr_at_1pct(result, "loss")
    assert _tpr_at_1pct(result, "lira-offline") > loss
    assert _tpr_at_1pct(result, "rmia") > loss
    assert result.n_reference_models == 2


def test_reference_models_are_cached_and_results_repeat(reference_audit):
    request, first = reference_audit
    again = run_mia(request)  # every model comes from the cache now
    assert json.dumps(first.to_dict(), sort_keys=True) == json.dumps(again.to_dict(), sort_keys=True)


def test_reference_dirs_reuse_trained_models(reference_audit):
    request, first = reference_audit
    dirs = tuple(sorted(request.cache_dir.rglob("model-*")))
    assert len(dirs) == 2
    again = run_mia(_request(attacks="lira-offline,rmia", population=DATA / "population.jsonl", reference_dirs=dirs))
    by_name = {a.name: a for a in first.attacks}
    np.testing.assert_allclose(again.attacks[0].scores, by_name["lira-offline"].scores)
    # RMIA tunes `a` only when it knows which population examples each model trained on, which a --reference-dir
    # model does not say: it falls back to the paper's 0.3 there.
    assert again.attacks[1].params["a_used"] == 0.3
    assert by_name["rmia"].params["a_used"] in attacks.rmia.A_GRID


def test_lira_scores_only_the_audited_texts(reference_audit, monkeypatch):
    """LiRA reads no population signal: neither the target nor a reference model scores the population for it.

    Scores agree to float32 rounding only: without the population, the length-sorted batches are padded differently.
    """
    from privaudit.target import Target

    request, first = reference_audit
    scored = []
    original = Target.logits
    monkeypatch.setattr(
        Target, "logits", lambda self, texts, **kw: scored.append(len(texts)) or original(self, texts, **kw)
    )
    again = run_mia(
        _request(
            attacks="lira-offline",
            population=DATA / "population.jsonl",
            reference_models=2,
            cache_dir=request.cache_dir,
        )
    )
    assert scored == [2000] * 3  # the target and 2 cached reference models, members and non-members only
    np.testing.assert_allclose(
        again.attacks[0].scores, next(a for a in first.attacks if a.name == "lira-offline").scores, rtol=1e-5
    )
    dirs = tuple(sorted(request.cache_dir.rglob("model-*")))
    without_population = run_mia(_request(attacks="lira-offline", reference_dirs=dirs))
    np.testing.assert_allclose(without_population.attacks[0].scores, again.attacks[0].scores, rtol=1e-5)


def test_attack_options_reach_the_attack(reference_audit):
    request, _ = reference_audit
    result = run_mia(
        _request(
            attacks="rmia,lira-offline",
            attack_options=("rmia:a=0.5", "rmia:gamma=2", "lira-offline:fixed_variance=false"),
            population=DATA / "population.jsonl",
            reference_models=2,
            cache_dir=request.cache_dir,
        )
    )
    rmia, lira = result.attacks
    assert {k: v for k, v in rmia.params.items() if k != "temperature_used"} == {
        "a": 0.5,
        "gamma": 2,
        "temperature": None,
        "a_used": 0.5,
    }
    assert rmia.params["temperature_used"] in attacks.rmia.TEMPERATURE_GRID  # tuned on the reference models
    assert lira.params == {"fixed_variance": False}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("rmia:a=0.5",), r"--attack-option for 'rmia', which is not selected; selected: loss"),
        (("loss:temperature=2",), r"attack 'loss' has no parameter 'temperature'; it takes no parameters"),
        (("rmia:a",), r"--attack-option 'rmia:a': expected ATTACK:PARAM=VALUE"),
    ],
)
def test_bad_attack_options_fail_before_scoring(options, message):
    with pytest.raises(PrivauditError, match=message):
        run_mia(_request(attacks="loss", attack_options=options))


def test_dp_model_bound_stays_below_theoretical_epsilon():
    result = run_mia(_request(model=TINY_DP, attacks="loss,entropy,modified-entropy"))
    assert result.theoretical_epsilon is not None and 7.5 < result.theoretical_epsilon < 8.5
    for attack in result.attacks:
        assert attack.metrics.epsilon_lower_bound < result.theoretical_epsilon
    assert result.exceeded() == []


def test_same_seed_same_json_through_the_cli(tmp_path):
    runner = CliRunner()
    args = ["mia", str(TINY), "--members", str(DATA / "members.jsonl"), "--non-members"]
    args += [str(DATA / "non_members.jsonl"), "--attack", "loss,entropy", "--format", "json", "--seed", "3"]
    outputs = []
    for name in ("a.json", "b.json"):
        result = runner.invoke(app, [*args, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outputs.append((tmp_path / name).read_text())
    assert outputs[0] == outputs[1]
    doc = json.loads(outputs[0])
    assert doc["schema"] == "privaudit.mia/1" and doc["seed"] == 3
    assert [a["name"] for a in doc["attacks"]] == ["loss", "entropy"]
    assert len(doc["model"]["fingerprint"]) == 64


def _gdp_epsilon(mu: float, delta: float) -> float:
    # Dong, Roth, Su 2019, Corollary 2.13: mu-GDP is (eps, delta)-DP for all eps with this delta(eps).
    def gap(eps: float) -> float:
        return stats.norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2) - delta

    return optimize.brentq(gap, 0.0, 100.0)


def _write_scores(path: Path, mu: float, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    members, non_members = rng.normal(mu, 1.0, n), rng.normal(0.0, 1.0, n)
    lines = [json.dumps({"member": 1, "score": float(s)}) for s in members]
    lines += [json.dumps({"member": 0, "score": float(s)}) for s in non_members]
    path.write_text("\n".join(lines) + "\n")


def test_gaussian_scores_bound_below_gdp_epsilon_and_grows_with_mu(tmp_path):
    runner = CliRunner()
    delta = 1e-5
    bounds = []
    for mu in (0.5, 1.0, 2.0, 3.0):
        scores = tmp_path / f"scores-{mu}.jsonl"
        _write_scores(scores, mu, 3000, seed=int(mu * 10))
        out = tmp_path / f"out-{mu}.json"
        result = runner.invoke(
            app, ["mia", "--scores", str(scores), "--delta", str(delta), "--format", "json", "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        bound = json.loads(out.read_text())["attacks"][0]["epsilon_lower_bound"]
        assert bound <= _gdp_epsilon(mu, delta)
        bounds.append(bound)
    assert bounds == sorted(bounds) and bounds[-1] > bounds[0] + 1.0


def test_scores_with_logits_run_every_logit_attack(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for member in (1, 0):
        for _ in range(50):
            logits = rng.normal(0, 1, 3) + (2.0 if member else 0.0) * np.eye(3)[0]
            lines.append(json.dumps({"member": member, "label": 0, "logits": logits.tolist()}))
    path = tmp_path / "logits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_mia(MiaRequest(model_dir=None, members=None, non_members=None, scores=path, attacks="loss,entropy"))
    assert [a.name for a in result.attacks] == ["loss", "entropy"]
    assert result.attacks[0].metrics.auc.value > 0.7  # members were given a larger margin on their label


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("overlap", "must be disjoint"),
        ("few", "at least 10"),
        ("label", "unknown label"),
        ("scores-columns", "needs 'member'"),
        ("no-population", "--population"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, setup, message):
    members = DATA / "members.jsonl"
    non_members = DATA / "non_members.jsonl"
    kw: dict = {"attacks": "loss"}
    if setup == "overlap":
        non_members = members
    elif setup == "few":
        few = tmp_path / "few.jsonl"
        few.write_text("".join(members.read_text().splitlines(keepends=True)[:5]))
        members = few
    elif setup == "label":
        odd = tmp_path / "odd.jsonl"
        odd.write_text(members.read_text() + json.dumps({"text": "hello there", "label": "no_such_intent"}) + "\n")
        members = odd
    elif setup == "scores-columns":
        bad = tmp_path / "scores.jsonl"
        bad.write_text(json.dumps({"value": 1.0}) + "\n")
        kw["scores"] = bad
    elif setup == "no-population":
        kw = {"attacks": "rmia", "reference_models": 1}
    model = None if "scores" in kw else TINY
    request = MiaRequest(model_dir=model, members=None if model is None else members, non_members=non_members, **kw)
    with pytest.raises(PrivauditError, match=message):
        run_mia(request)

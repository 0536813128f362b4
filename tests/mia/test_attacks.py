"""Tests for the attack base, the registry and the built-in attacks (``attacks/``).

Statistical checks run on a synthetic world whose truth is known: each example has its own difficulty, as in
Carlini et al. 2022, so attacks calibrated per example must beat the global LOSS threshold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from privaudit import attacks
from privaudit.errors import PrivauditError
from privaudit.mia import registry
from privaudit.mia.attack import SIGNAL_NAMES, Attack
from privaudit.mia.registry import get_attack, resolve
from privaudit.mia.signals import Signals

BUILTINS = {
    "loss",
    "confidence",
    "entropy",
    "modified-entropy",
    "reference-loss",
    "lira-offline",
    "lira-online",
    "rmia",
    "gap",
}


# --- a synthetic world with per-example difficulty -------------------------------------------------------


def logits_with_confidence(phi: np.ndarray, labels: np.ndarray, rng: np.random.Generator, n_classes: int = 3):
    """Random logits whose logit-scaled confidence on ``labels`` is exactly ``phi``."""
    z = rng.normal(size=(*phi.shape, n_classes))
    is_label = np.arange(n_classes) == np.broadcast_to(labels, phi.shape)[..., None]
    logsumexp_others = np.log(np.where(is_label, 0.0, np.exp(z)).sum(axis=-1))
    return np.where(is_label, (phi + logsumexp_others)[..., None], z)


def make_world(seed: int = 0, n: int = 4000, m: int = 2000, k: int = 16, offline: bool = False):
    """Signals and true membership for a world where confidence = difficulty + gap * member + noise.

    OUT confidence ~ N(d_i, s), IN confidence ~ N(d_i + gap, s); the difficulty d_i varies more than the gap,
    so a single threshold (LOSS) confuses easy non-members with members.
    """
    spread, gap, noise = 2.0, 1.5, 0.5
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, spread, n)
    member = rng.random(n) < 0.5
    labels = rng.integers(0, 3, n)
    reference_in = np.zeros((k, n), dtype=bool) if offline else rng.random((k, n)) < 0.5
    target_phi = rng.normal(difficulty + gap * member, noise)
    reference_phi = rng.normal(difficulty + gap * reference_in, noise)
    population_difficulty = rng.normal(0.0, spread, m)
    population_labels = rng.integers(0, 3, m)
    signals = Signals(
        logits=logits_with_confidence(target_phi, labels, rng),
        labels=labels,
        reference_logits=logits_with_confidence(reference_phi, labels, rng),
        reference_in=reference_in,
        population_logits=logits_with_confidence(rng.normal(population_difficulty, noise), population_labels, rng),
        population_labels=population_labels,
        population_reference_logits=logits_with_confidence(
            rng.normal(population_difficulty, noise, size=(k, m)), population_labels, rng
        ),
    )
    return signals, member


def tpr_at_fpr(member: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    false_positive_rate, true_positive_rate, _ = roc_curve(member, scores)
    return float(true_positive_rate[false_positive_rate <= fpr].max())


@pytest.fixture(scope="module")
def online_world():
    return make_world(seed=0)


@pytest.fixture(scope="module")
def offline_world():
    return make_world(seed=1, offline=True)


@pytest.mark.parametrize("name", ["lira-online", "lira-offline", "rmia", "reference-loss"])
def test_calibrated_attacks_beat_loss_at_low_fpr(online_world, name):
    signals, member = online_world
    loss_tpr = tpr_at_fpr(member, get_attack("loss").score(signals))
    attack_tpr = tpr_at_fpr(member, get_attack(name).score(signals))
    assert loss_tpr < 0.15  # the world is built so that LOSS is weak
    assert attack_tpr > loss_tpr + 0.15


@pytest.mark.parametrize("name", ["lira-offline", "rmia"])
def test_offline_attacks_beat_loss_without_in_models(offline_world, name):
    signals, member = offline_world
    loss_tpr = tpr_at_fpr(member, get_attack("loss").score(signals))
    assert tpr_at_fpr(member, get_attack(name).score(signals)) > loss_tpr + 0.2


def test_lira_online_is_at_least_as_strong_as_offline(online_world):
    signals, member = online_world
    online = tpr_at_fpr(member, get_attack("lira-online").score(signals))
    offline = tpr_at_fpr(member, get_attack("lira-offline").score(signals))
    assert online > 0.5 and online >= offline - 0.05


@pytest.mark.parametrize("k", [1, 2, 3])
def test_few_reference_models_fall_back_without_nan(k):
    # With k <= 3 and random inclusion many examples have no IN or no OUT model at all.
    signals, member = make_world(seed=2, n=1000, m=200, k=k)
    with np.errstate(all="raise"):
        for name in ["lira-online", "lira-offline", "rmia", "reference-loss"]:
            scores = get_attack(name).score(signals)
            assert scores.shape == member.shape and np.isfinite(scores).all(), name


def test_lira_variance_default_follows_number_of_reference_models():
    few, _ = make_world(seed=3, n=300, m=10, k=attacks.lira.FIXED_VARIANCE_BELOW - 1)
    many, _ = make_world(seed=3, n=300, m=10, k=attacks.lira.FIXED_VARIANCE_BELOW)
    for name in ["lira-online", "lira-offline"]:
        np.testing.assert_array_equal(get_attack(name).score(few), get_attack(name, fixed_variance=True).score(few))
        np.testing.assert_array_equal(get_attack(name).score(many), get_attack(name, fixed_variance=False).score(many))


# --- exact formulas on hand-computed inputs --------------------------------------------------------------

# Row 0: p = (1/4, 3/4), label 1. Row 1: p = (1/8, 2/8, 5/8), label 2 (third logit of row 0 is -inf: p = 0).
HAND_LOGITS = np.array(
    [[math.log(1 / 4), math.log(3 / 4), -np.inf], [math.log(1 / 8), math.log(2 / 8), math.log(5 / 8)]]
)
HAND_LABELS = np.array([1, 2])


def hand_signals(**extra) -> Signals:
    return Signals(logits=HAND_LOGITS, labels=HAND_LABELS, **extra)


def test_loss_and_confidence_by_hand():
    np.testing.assert_allclose(get_attack("loss").score(hand_signals()), [math.log(3 / 4), math.log(5 / 8)])
    np.testing.assert_allclose(get_attack("confidence").score(hand_signals()), [3 / 4, 5 / 8])


def test_entropy_by_hand():
    h0 = -(1 / 4 * math.log(1 / 4) + 3 / 4 * math.log(3 / 4))  # the p = 0 class adds nothing
    h1 = -(1 / 8 * math.log(1 / 8) + 2 / 8 * math.log(2 / 8) + 5 / 8 * math.log(5 / 8))
    np.testing.assert_allclose(get_attack("entropy").score(hand_signals()), [-h0, -h1])


def test_modified_entropy_by_hand():
    # Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    m0 = -(1 / 4) * math.log(3 / 4) - (1 / 4) * math.log(3 / 4) - 0.0 * math.log(1.0)
    m1 = -(3 / 8) * math.log(5 / 8) - (1 / 8) * math.log(7 / 8) - (2 / 8) * math.log(6 / 8)
    np.testing.assert_allclose(get_attack("modified-entropy").score(hand_signals()), [-m0, -m1])
    # Label 0 of row 1: a likelier wrong class makes Mentr larger.
    m1_label0 = -(7 / 8) * math.log(1 / 8) - (2 / 8) * math.log(6 / 8) - (5 / 8) * math.log(3 / 8)
    np.testing.assert_allclose(attacks.entropy.modified_entropy(HAND_LOGITS[1:], np.array([0])), [m1_label0])


def test_modified_entropy_stays_finite_for_certain_wrong_prediction():
    scores = attacks.entropy.modified_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([1, 1]))
    assert np.isfinite(scores).all() and scores[0] > 100 and scores[1] == pytest.approx(0.0)


def test_logit_scaled_confidence_by_hand_and_stable():
    p0 = math.e / (math.e + math.e**2 + math.e**3)
    phi = attacks.lira.logit_scaled_confidence(np.array([[1.0, 2.0, 3.0]]), np.array([0]))
    np.testing.assert_allclose(phi, [math.log(p0) - math.log(1 - p0)])
    # p_y rounds to 1.0 in float64 here; the logsumexp form still gives z_y - z_other exactly.
    np.testing.assert_allclose(attacks.lira.logit_scaled_confidence(np.array([[800.0, 0.0]]), np.array([0])), [800.0])


def one_example_with_references(target_phi: float, in_phi: list[float], out_phi: list[float]) -> Signals:
    """Two-class signals for one example with label 1, where logits (0, phi) give confidence exactly phi."""
    reference_phi = np.array(in_phi + out_phi)
    return Signals(
        logits=np.array([[0.0, target_phi]]),
        labels=np.array([1]),
        reference_logits=np.stack([np.zeros_like(reference_phi), reference_phi], axis=-1)[:, None, :],
        reference_in=np.array([True] * len(in_phi) + [False] * len(out_phi))[:, None],
    )


@pytest.mark.parametrize("fixed_variance", [True, False])
def test_lira_by_hand(fixed_variance):
    # IN {1, 3}: mean 2, variance 2 (ddof 1); OUT {-1, 1}: mean 0, variance 2; target phi = 2.
    signals = one_example_with_references(2.0, [1.0, 3.0], [-1.0, 1.0])
    # log N(2; 2, 2) - log N(2; 0, 2) = 0 - (-(2 - 0)^2 / (2 * 2)) = 1
    online = get_attack("lira-online", fixed_variance=fixed_variance).score(signals)
    np.testing.assert_allclose(online, [1.0])
    # log Pr[N(0, 2) < 2] = log Phi(2 / sqrt 2) = log(0.5 * (1 + erf(1)))
    offline = get_attack("lira-offline", fixed_variance=fixed_variance).score(signals)
    np.testing.assert_allclose(offline, [math.log(0.5 * (1 + math.erf(1.0)))])


def test_reference_loss_by_hand():
    # Target p_y = 3/4; OUT references p_y = 1/2 and 7/8; the IN reference (p_y ~ 1) is ignored.
    signals = Signals(
        logits=np.array([[0.0, math.log(3)]]),
        labels=np.array([1]),
        reference_logits=np.array([[[0.0, 0.0]], [[0.0, math.log(7)]], [[0.0, 10.0]]]),
        reference_in=np.array([[False], [False], [True]]),
    )
    expected = -(-math.log(3 / 4) - (-math.log(1 / 2) - math.log(7 / 8)) / 2)
    np.testing.assert_allclose(get_attack("reference-loss").score(signals), [expected])


def test_rmia_offline_marginal_by_hand():
    signals = Signals(
        logits=np.array([[0.0, 0.0]]),
        labels=np.array([1]),
        reference_logits=np.array([[[0.0, 0.0]]]),  # one OUT reference, p_y = 1/2
        reference_in=np.array([[False]]),
        population_logits=np.zeros((1, 2)),
        population_labels=np.array([0]),
        population_reference_logits=np.array([[[0.0, math.log(3)]]]),  # p_z = 1/4 under the reference
    )
    pr_x, pr_z = get_attack("rmia", a=0.3).marginals(signals)
    np.testing.assert_allclose(pr_x, [0.5 * (1.3 * 0.5 + 0.7)])
    np.testing.assert_allclose(pr_z, [0.5 * (1.3 * 0.25 + 0.7)])


# --- RMIA's sorted count equals the O(n * m) definition --------------------------------------------------


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_fraction_dominated_matches_brute_force(gamma):
    rng = np.random.default_rng(4)
    ratio_x = rng.lognormal(size=300)
    ratio_z = np.concatenate([rng.lognormal(size=200), ratio_x[:20], [0.0]])  # ties with x, and a zero
    brute = np.array([np.mean([rx / rz > gamma if rz > 0 else True for rz in ratio_z]) for rx in ratio_x])
    np.testing.assert_array_equal(attacks.rmia.fraction_dominated(ratio_x, ratio_z, gamma), brute)


@pytest.mark.parametrize("online", [True, False])
def test_rmia_matches_brute_force_from_definitions(online):
    signals, _ = make_world(seed=5, n=60, m=40, k=4, offline=not online)
    a, gamma = 0.4, 1.5

    def p_true(logits, labels):
        p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        return np.take_along_axis(p, np.broadcast_to(labels, p.shape[:-1])[..., None], axis=-1)[..., 0]

    ref_p, ref_in = p_true(signals.reference_logits, signals.labels), signals.reference_in
    pr_x = []
    for i in range(signals.n_examples):
        p_in, p_out = ref_p[ref_in[:, i], i], ref_p[~ref_in[:, i], i]
        if len(p_in) and len(p_out):
            pr_x.append((p_in.mean() + p_out.mean()) / 2)
        elif len(p_out):
            pr_x.append(0.5 * ((1 + a) * p_out.mean() + (1 - a)))
        else:
            pr_x.append(p_in.mean())
    pr_z = 0.5 * ((1 + a) * p_true(signals.population_reference_logits, signals.population_labels).mean(0) + 1 - a)
    lr_x = p_true(signals.logits, signals.labels) / np.array(pr_x)
    lr_z = p_true(signals.population_logits, signals.population_labels) / pr_z
    brute = np.array([np.mean([lx / lz > gamma for lz in lr_z]) for lx in lr_x])
    score = get_attack("rmia", a=a, gamma=gamma).score(signals)
    # The score is the fraction plus a tie-breaker below one z-sample's share (1 / (m + 1)), ordered by LR(x).
    m = len(lr_z)
    np.testing.assert_allclose(np.floor(score * m + 1e-9) / m, brute)
    assert np.all(score - brute < 1 / (m + 1)) and np.all(score >= brute)
    assert np.array_equal(np.argsort(score, kind="stable"), np.argsort(lr_x, kind="stable"))


def test_rmia_breaks_saturated_ties_by_likelihood_ratio():
    signals, _ = make_world(seed=3, n=200, m=5, k=4, offline=True)
    score = get_attack("rmia").score(signals)
    # Only 5 z-samples: the fraction alone takes at most 6 values; the tie-breaker makes every score distinct.
    assert len(np.unique(score)) == signals.n_examples


def test_rmia_population_marginal_uses_only_models_trained_without_z():
    # Three reference models; z0 is IN model 0 only, z1 is IN every model, z2 is IN none.
    p = np.array([[0.9, 0.8, 0.2], [0.3, 0.7, 0.4], [0.5, 0.6, 0.6]])
    population_in = np.array([[True, True, False], [False, True, False], [False, True, False]])
    signals = Signals(
        logits=np.zeros((1, 2)),
        labels=np.array([1]),
        reference_logits=np.zeros((3, 1, 2)),
        reference_in=np.zeros((3, 1), dtype=bool),
        population_logits=np.zeros((3, 2)),
        population_labels=np.array([1, 1, 1]),
        population_reference_logits=np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=-1),
        population_reference_in=population_in,
    )
    _, pr_z = get_attack("rmia", a=0.2).marginals(signals, a=0.2)
    offline = lambda mean_out: 0.5 * (1.2 * mean_out + 0.8)  # noqa: E731
    np.testing.assert_allclose(pr_z[[0, 2]], [offline((0.3 + 0.5) / 2), offline((0.2 + 0.4 + 0.6) / 3)])
    assert np.isnan(pr_z[1])  # IN every reference model: no OUT estimate, left out of the z-samples
    score = get_attack("rmia", a=0.2).score(signals)
    assert 0.0 <= score[0] <= 1.0


def _pseudo_target_tpr(population_p, population_in, j, a, fpr=0.01):
    """TPR at ``fpr`` of the offline RMIA ratio attacking reference model ``j`` with the others, via sklearn."""
    others = [i for i in range(population_p.shape[0]) if i != j]
    rows = []
    for x in range(population_p.shape[1]):
        outs = [population_p[i, x] for i in others if not population_in[i, x]]
        if outs:
            rows.append((population_p[j, x] / (0.5 * ((1 + a) * np.mean(outs) + 1 - a)), population_in[j, x]))
    score, member = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    false_positive_rate, true_positive_rate, _ = roc_curve(member, score)
    return float(true_positive_rate[false_positive_rate <= fpr].max())


def test_tune_a_picks_the_value_with_the_best_pseudo_target_tpr():
    # Members' probability is lifted on a per-example difficulty, so the best `a` is interior and data-dependent.
    rng = np.random.default_rng(8)
    k, m = 4, 1500
    difficulty = rng.beta(2, 2, m)
    population_in = rng.random((k, m)) < 0.5
    population_p = np.clip(difficulty + 0.25 * population_in * (1 - difficulty) + rng.normal(0, 0.05, (k, m)), 1e-3, 1)
    grid = attacks.rmia.A_GRID
    tpr = [np.mean([_pseudo_target_tpr(population_p, population_in, j, a) for j in range(k)]) for a in grid]
    best = max(tpr)
    expected = min((a for a, t in zip(grid, tpr, strict=True) if t == best), key=lambda a: abs(a - 0.3))
    assert attacks.rmia.tune_a(population_p, population_in) == expected
    assert len(set(np.round(tpr, 6))) > 1  # the grid matters here: the check can fail


def test_rmia_tunes_a_with_the_audited_model_as_one_more_reference():
    signals, _ = make_world(seed=6, n=50, m=400, k=4, offline=True)
    assert get_attack("rmia").resolved_a(signals) == attacks.rmia.DEFAULT_A  # population membership unknown
    rng = np.random.default_rng(0)
    known = Signals(**{**signals.__dict__, "population_reference_in": rng.random((4, 400)) < 0.5})
    population_p = np.exp(-attacks.rmia.losses(known.population_reference_logits, known.population_labels))
    target_p = np.exp(-attacks.rmia.losses(known.population_logits, known.population_labels))
    tuned = get_attack("rmia", temperature=1)  # the plain softmax: tune_a's probabilities
    tuned.score(known)
    assert tuned.get_params()["a_used"] == attacks.rmia.tune_a(population_p, known.population_reference_in, target_p)
    # The audited model is OUT for every population example: exactly one more reference model with no member.
    stacked = np.vstack([population_p, target_p[None]]), np.vstack([known.population_reference_in, np.zeros((1, 400))])
    assert attacks.rmia.tune_a(population_p, known.population_reference_in, target_p) == attacks.rmia.tune_a(*stacked)
    assert get_attack("rmia", a=0.6).resolved_a(known) == 0.6


def test_tune_a_with_one_reference_model_plays_it_against_the_audited_model():
    rng = np.random.default_rng(9)
    m = 1500
    difficulty = rng.beta(2, 2, m)
    member = rng.random(m) < 0.5
    reference_p = np.clip(difficulty + 0.25 * member * (1 - difficulty) + rng.normal(0, 0.05, m), 1e-3, 1)
    target_p = np.clip(difficulty + rng.normal(0, 0.05, m), 1e-3, 1)  # no population example is its member
    assert attacks.rmia.tune_a(reference_p[None], member[None]) == attacks.rmia.DEFAULT_A  # no game to play
    grid = attacks.rmia.A_GRID
    both, both_in = np.vstack([reference_p, target_p]), np.vstack([member, np.zeros(m, dtype=bool)])
    tpr = [_pseudo_target_tpr(both, both_in, 0, a) for a in grid]
    expected = min((a for a, t in zip(grid, tpr, strict=True) if t == max(tpr)), key=lambda a: abs(a - 0.3))
    assert attacks.rmia.tune_a(reference_p[None], member[None], target_p) == expected != attacks.rmia.DEFAULT_A


# --- registry --------------------------------------------------------------------------------------------


def test_resolve_all_and_lists():
    assert set(resolve("all")) == set(registry.available_attacks()) >= BUILTINS
    assert resolve(" loss, lira-offline ,loss") == ["loss", "lira-offline"]


@pytest.mark.parametrize("spec", ["loss,lira", "", " , "])
def test_resolve_rejects_unknown_or_empty(spec):
    with pytest.raises(PrivauditError) as error:
        resolve(spec)
    assert "lira-offline" in str(error.value) and "rmia" in str(error.value)


def test_get_attack_rejects_unknown_parameter():
    with pytest.raises(PrivauditError, match="'alpha'.*takes: a, gamma, temperature"):
        get_attack("rmia", alpha=0.5)
    with pytest.raises(PrivauditError, match="takes no parameters"):
        get_attack("loss", temperature=2.0)
    assert get_attack("rmia", a=0.5).get_params() == {"a": 0.5, "gamma": 1.0, "temperature": None}


def test_parse_attack_options_reads_typed_values():
    options = registry.parse_attack_options(
        ["rmia:a=0.5", "rmia:gamma=2", "lira-offline:fixed_variance=False", "rmia:a=none", "x:y=text"]
    )
    assert options == {"rmia": {"a": None, "gamma": 2}, "lira-offline": {"fixed_variance": False}, "x": {"y": "text"}}
    for bad in ("rmia", "rmia:a", ":a=1", "rmia:=1", "rmia:a="):
        with pytest.raises(PrivauditError, match="expected ATTACK:PARAM=VALUE"):
            registry.parse_attack_options([bad])


def test_rmia_rejects_a_non_numeric_parameter(online_world):
    signals, _ = online_world
    with pytest.raises(PrivauditError, match=r"a must be between 0 and 1 \(or none: tuned\), got 'high'"):
        get_attack("rmia", a="high").score(signals)


class _FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint, and records whether it was loaded."""

    def __init__(self, name: str, value: str, target: object = None, error: Exception | None = None):
        self.name, self.value, self.group = name, value, registry.ENTRY_POINT_GROUP
        self._target, self._error, self.loads = target, error, 0

    def load(self):
        self.loads += 1
        if self._error is not None:
            raise self._error
        return self._target


class _PluginAttack(Attack):
    name = "plugin-attack"
    description = "A third-party attack for the tests"
    requires = frozenset({"logits"})

    def score(self, signals: Signals) -> np.ndarray:
        return np.zeros(signals.n_examples)


@pytest.fixture
def plugins(monkeypatch):
    entry_points = [
        _FakeEntryPoint("plugin-attack", "third_party.attacks:PluginAttack", target=_PluginAttack),
        _FakeEntryPoint("broken", "broken_pkg:Attack", error=ImportError("No module named 'torchx'")),
        _FakeEntryPoint("misnamed", "third_party.attacks:PluginAttack", target=_PluginAttack),
    ]

    def fake_entry_points(*, group: str):
        assert group == "privaudit.attacks"
        return entry_points

    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    return {ep.name: ep for ep in entry_points}


def test_plugins_are_listed_without_being_imported(plugins):
    assert {"plugin-attack", "broken", "misnamed"} <= set(resolve("all"))
    assert resolve("loss,broken") == ["loss", "broken"]
    get_attack("loss")
    assert all(ep.loads == 0 for ep in plugins.values())
    assert isinstance(get_attack("plugin-attack"), _PluginAttack)
    assert plugins["plugin-attack"].loads == 1 and plugins["broken"].loads == 0


def test_broken_plugin_fails_only_when_selected(plugins):
    with pytest.raises(PrivauditError, match=r"plugin 'broken' \(broken_pkg:Attack\).*ImportError.*torchx"):
        get_attack("broken")
    with pytest.raises(PrivauditError, match="entry point and the class attribute 'name' must match"):
        get_attack("misnamed")
    infos = {info.name: info for info in registry.list_attacks()}
    assert infos["broken"].error and "torchx" in infos["broken"].error
    assert infos["plugin-attack"].error is None and infos["plugin-attack"].source == plugins["plugin-attack"].value
    assert infos["loss"].source == "built-in" and infos["loss"].error is None


def test_real_entry_point_discovery_runs():
    assert isinstance(registry._plugin_entry_points(), dict)


def test_register_attack_rejects_clashes_and_missing_attributes():
    with pytest.raises(PrivauditError, match="is taken by"):

        @registry.register_attack
        class Impostor(_PluginAttack):
            name = "loss"

    with pytest.raises(PrivauditError, match="must set the class attribute 'description'"):

        @registry.register_attack
        class Undescribed(_PluginAttack):
            name = "undescribed"
            description = ""

    assert "undescribed" not in registry.available_attacks()


# --- checks before scoring -------------------------------------------------------------------------------


def test_check_names_attack_and_missing_signal():
    logits_only = hand_signals()
    with pytest.raises(PrivauditError, match="attack 'lira-offline' needs reference models: pass --reference-models"):
        get_attack("lira-offline").check(logits_only)
    with pytest.raises(PrivauditError, match="attack 'rmia' needs .*--population"):
        get_attack("rmia").score(
            Signals(HAND_LOGITS, HAND_LABELS, np.stack([HAND_LOGITS] * 2), np.zeros((2, 2), dtype=bool))
        )


def test_check_online_needs_in_models(offline_world):
    signals, _ = offline_world
    with pytest.raises(PrivauditError, match="'lira-online' needs reference models that include the audited"):
        get_attack("lira-online").check(signals)
    get_attack("lira-offline").check(signals)


def test_check_rejects_bad_parameters(online_world):
    signals, _ = online_world
    with pytest.raises(PrivauditError, match="a must be between 0 and 1"):
        get_attack("rmia", a=1.5).score(signals)
    with pytest.raises(PrivauditError, match="gamma must be a positive number"):
        get_attack("rmia", gamma=0).score(signals)


# --- every registered attack -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_attack_declares_itself_and_scores_quietly(name, capsys):
    cls = registry.get_attack_class(name)
    assert cls.name == name and cls.description and "\n" not in cls.description
    # Each reads some of the target's own outputs: full logits, the returned classes' scores, or the label alone.
    assert cls.requires & {"logits", "top_k", "labels"} and cls.requires <= SIGNAL_NAMES
    signals, member = make_world(seed=6, n=200, m=50, k=4)
    scores = get_attack(name).score(signals)
    assert scores.shape == member.shape and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert capsys.readouterr() == ("", "")


def _scaled(signals: Signals, factor: float) -> Signals:
    fields = ("logits", "reference_logits", "population_logits", "population_reference_logits")
    return Signals(**{**signals.__dict__, **{name: getattr(signals, name) * factor for name in fields}})


def test_rmia_temperature_divides_every_logit_before_the_softmax():
    # Known answer (PrivacyGuard's RMIA, Zarifzadeh et al. 2024): p = softmax(logits / T)[y], so RMIA at T=2 on the
    # logits is RMIA at T=1 on logits / 2, for the audited model, the reference models and the population alike.
    signals, member = make_world(seed=3, n=400, m=600, k=4, offline=True)
    at_two = get_attack("rmia", a=0.4, temperature=2.0).score(signals)
    halved = get_attack("rmia", a=0.4, temperature=1.0).score(_scaled(signals, 0.5))
    np.testing.assert_allclose(at_two, halved, rtol=1e-12)
    plain = get_attack("rmia", a=0.4, temperature=1.0).score(signals)
    assert not np.allclose(at_two, plain)  # the temperature changes the ranking here: the check can fail
    p = np.exp(attacks.rmia.losses(signals.logits / 2, signals.labels) * -1)
    np.testing.assert_allclose(attacks.rmia.tempered_p(signals.logits, signals.labels, 2.0), p)


def test_rmia_tunes_the_temperature_on_the_reference_models_only():
    signals, _ = make_world(seed=4, n=300, m=800, k=4, offline=True)
    rng = np.random.default_rng(1)
    known = Signals(**{**signals.__dict__, "population_reference_in": rng.random((4, 800)) < 0.5})
    # Members of each reference model get a lower loss, sharper at a higher temperature, so the tuning has signal.
    boosted = known.population_reference_logits.copy()
    rows = np.arange(800)
    for j in range(4):
        boosted[j, rows, known.population_labels] += 2.0 * known.population_reference_in[j]
    known = Signals(**{**known.__dict__, "population_reference_logits": boosted})
    rmia = get_attack("rmia")
    rmia.score(known)
    a, temperature = rmia.get_params()["a_used"], rmia.get_params()["temperature_used"]
    assert temperature in attacks.rmia.TEMPERATURE_GRID and a in attacks.rmia.A_GRID
    # Brute force over the grid with tune_a's own games on softmax(logits / T): the same (a, T).
    best = None
    for t in attacks.rmia.TEMPERATURE_GRID:
        pop_p = attacks.rmia.tempered_p(boosted, known.population_labels, t)
        target_p = attacks.rmia.tempered_p(known.population_logits, known.population_labels, t)
        stacked_p = np.vstack([pop_p, target_p[None]])
        stacked_in = np.vstack([known.population_reference_in, np.zeros((1, 800), dtype=bool)])
        for g in attacks.rmia.A_GRID:
            tpr = np.mean(
                [_pseudo_target_tpr(stacked_p, stacked_in, j, g) for j in range(4)]
            )  # the audited model has no member: no game
            key = (round(tpr, 9), -abs(t - 1.0), -abs(g - 0.3))
            best = max(best or (key, (g, t)), (key, (g, t)))
    assert (a, temperature) == best[1]
    # The audited examples (whose membership the audit measures) play no part: other audited logits, same (a, T).
    shuffled = Signals(**{**known.__dict__, "logits": known.logits[::-1].copy(), "labels": known.labels[::-1].copy()})
    assert get_attack("rmia").resolved(shuffled) == (a, temperature)
    # Fixed by the user: not tuned; without the population's membership: the plain softmax.
    assert get_attack("rmia", temperature=3.0).resolved(known)[1] == 3.0
    assert get_attack("rmia").resolved(signals) == (attacks.rmia.DEFAULT_A, attacks.rmia.DEFAULT_TEMPERATURE)


@pytest.mark.parametrize("value", [0, -1.0, "hot", True])
def test_rmia_refuses_a_bad_temperature(value):
    signals, _ = make_world(seed=5, n=50, m=100, k=2, offline=True)
    with pytest.raises(PrivauditError, match="temperature must be a positive number"):
        get_attack("rmia", temperature=value).score(signals)

"""Theoretical epsilon (``privaudit/stats/accounting.py``) against known answers from Opacus's tests and the exact Gaussian."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from conftest import FIXTURE_MODEL
from scipy.optimize import brentq
from scipy.stats import norm

from privaudit.errors import PrivauditError
from privaudit.stats.accounting import epsilon, epsilon_from_model, noise_multiplier_for_epsilon

# Opacus, opacus/tests/accountants_test.py: 90 epochs at sample rate 0.04, noise 1.5, delta 1e-5.
OPACUS = dict(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5)


@pytest.fixture(autouse=True)
def _quiet_gdp():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="GDP accounting is experimental")
        yield


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact epsilon of one Gaussian mechanism of sensitivity 1 (Balle & Wang 2018, Theorem 8)."""

    def delta_at(eps: float) -> float:
        return norm.cdf(1 / (2 * sigma) - eps * sigma) - math.exp(eps) * norm.cdf(-1 / (2 * sigma) - eps * sigma)

    return brentq(lambda eps: delta_at(eps) - delta, 1e-6, 100)


def test_rdp_known_answer() -> None:
    assert epsilon(**OPACUS) == pytest.approx(7.32911117143, abs=1e-6)  # Opacus test_rdp_accountant
    assert round(epsilon(**OPACUS, accountant="rdp"), 3) == 7.329


def test_prv_known_answer() -> None:
    # PRV (Gopi et al. 2021) is tighter than RDP on the same mechanism: about 6.777.
    assert epsilon(**OPACUS, accountant="prv") == pytest.approx(6.777, abs=0.01)


def test_gdp_known_answer() -> None:
    # Opacus test_gdp_accountant: steps = int(90 // 0.04) = 2249, epsilon in (6.59, 6.6).
    assert 6.59 < epsilon(**{**OPACUS, "steps": 2249}, accountant="gdp") < 6.6


def test_one_full_batch_step_is_the_gaussian_mechanism() -> None:
    # Sample rate 1, one step: exactly the Gaussian mechanism, whose epsilon is known in closed form (4.377 at
    # sigma 1, delta 1e-5). PRV is numerically tight; RDP is a valid but looser upper bound.
    exact = gaussian_epsilon(1.0, 1e-5)
    assert exact == pytest.approx(4.3772, abs=1e-3)
    single = dict(noise_multiplier=1.0, sample_rate=1.0, steps=1, delta=1e-5)
    assert exact <= epsilon(**single, accountant="prv") <= exact + 0.02
    assert exact < epsilon(**single, accountant="rdp") < exact + 0.5


def test_epsilon_grows_with_steps_and_sample_rate_and_shrinks_with_noise() -> None:
    base = epsilon(**OPACUS)
    assert epsilon(**{**OPACUS, "steps": 4500}) > base
    assert epsilon(**{**OPACUS, "sample_rate": 0.08}) > base
    assert epsilon(**{**OPACUS, "noise_multiplier": 3.0}) < base
    assert epsilon(**{**OPACUS, "delta": 1e-3}) < base


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"noise_multiplier": 0.0}, "--noise-multiplier"),
        ({"noise_multiplier": -1.0}, "--noise-multiplier"),
        ({"sample_rate": 0.0}, "--sample-rate"),
        ({"sample_rate": 1.5}, "--sample-rate"),
        ({"steps": 0}, "--steps"),
        ({"delta": 0.0}, "--delta"),
        ({"delta": 1.0}, "--delta"),
        ({"accountant": "moments"}, "--accountant 'moments' is unknown"),
    ],
)
def test_bad_parameters_name_the_flag(change: dict, flag: str) -> None:
    with pytest.raises(PrivauditError, match=flag):
        epsilon(**{**OPACUS, **change})


def test_noise_multiplier_for_epsilon_known_answers() -> None:
    # Opacus test_get_noise_multiplier_rdp_steps (1.3562) and test_get_noise_multiplier_gdp (1.3232421875).
    rdp = noise_multiplier_for_epsilon(target_epsilon=8, delta=1e-5, sample_rate=0.04, steps=2000)
    assert rdp == pytest.approx(1.3562, abs=1e-4)
    gdp = noise_multiplier_for_epsilon(target_epsilon=8, delta=1e-5, sample_rate=0.04, steps=2250, accountant="gdp")
    assert gdp == pytest.approx(1.3232421875, abs=1e-9)


@pytest.mark.parametrize(("target", "sample_rate", "steps"), [(1.0, 0.01, 100), (8.0, 0.04, 2000)])
def test_noise_multiplier_reaches_the_target_from_below(target: float, sample_rate: float, steps: int) -> None:
    params = dict(delta=1e-5, sample_rate=sample_rate, steps=steps, accountant="rdp")
    noise = noise_multiplier_for_epsilon(target_epsilon=target, **params)
    reached = epsilon(noise_multiplier=noise, **params)
    assert target - 0.005 <= reached <= target  # the search stops within 0.005 below the target


def test_noise_multiplier_for_epsilon_rejects_what_cannot_be_met() -> None:
    with pytest.raises(PrivauditError, match="--target-epsilon must be above 0"):
        noise_multiplier_for_epsilon(target_epsilon=0.0, delta=1e-5, sample_rate=0.1, steps=10)
    with pytest.raises(PrivauditError, match="--accountant 'foo' is unknown"):
        noise_multiplier_for_epsilon(target_epsilon=1.0, delta=1e-5, sample_rate=0.1, steps=10, accountant="foo")
    # Past a noise multiplier of 1e6 Opacus gives up; that is bad input, not a crash.
    with pytest.raises(PrivauditError, match="--target-epsilon 1e-06 is out of reach"):
        noise_multiplier_for_epsilon(target_epsilon=1e-6, delta=1e-5, sample_rate=1.0, steps=100)


def write_recipe(model_dir: Path, dp: dict | None) -> Path:
    model_dir.mkdir()
    (model_dir / "privaudit.json").write_text(json.dumps({"dp": dp}), encoding="utf-8")
    return model_dir


def test_epsilon_from_model_recomputes_from_the_recorded_fields(tmp_path: Path) -> None:
    model_dir = write_recipe(tmp_path / "m", {**OPACUS, "accountant": "rdp", "epsilon": 123.0})
    eps, delta = epsilon_from_model(model_dir)
    assert eps == pytest.approx(7.32911117143, abs=1e-6)  # not the 123 written beside them
    assert delta == 1e-5
    assert epsilon_from_model(model_dir, accountant="prv")[0] == pytest.approx(6.777, abs=0.01)


def test_epsilon_from_a_model_trained_without_dp_is_none(tmp_path: Path) -> None:
    assert json.loads((FIXTURE_MODEL / "privaudit.json").read_text(encoding="utf-8"))["dp"] is None
    assert epsilon_from_model(FIXTURE_MODEL) is None
    assert epsilon_from_model(write_recipe(tmp_path / "m", None)) is None


def test_epsilon_from_model_errors(tmp_path: Path) -> None:
    with pytest.raises(PrivauditError, match="no privaudit.json"):
        epsilon_from_model(tmp_path)
    incomplete = write_recipe(tmp_path / "incomplete", {"noise_multiplier": 1.0, "sample_rate": 0.1, "delta": 1e-5})
    with pytest.raises(PrivauditError, match="lacks 'steps'"):
        epsilon_from_model(incomplete)
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "privaudit.json").write_text("{", encoding="utf-8")
    with pytest.raises(PrivauditError, match="malformed JSON"):
        epsilon_from_model(malformed)

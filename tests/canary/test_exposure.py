"""Tests for privaudit.canary.exposure against TensorFlow Privacy's secret_sharer known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from privaudit.canary.exposure import exposure_by_extrapolation, exposure_by_rank, exposures
from privaudit.errors import PrivauditError

# TF Privacy exposures_test.py, test_exposure_interpolation: references 1..16.
REFERENCE = np.arange(1.0, 17.0)


@pytest.mark.parametrize(
    "secret, expected",
    [
        (0.0, 4.0),  # below every reference: rank 1, log2(16)
        (0.1, 4.0),
        (20.0, 4.0 - math.log2(17)),  # above every reference: rank 17, -0.0875
        (3.5, 2.0),  # three references below: rank 4
    ],
)
def test_exposure_by_rank_tf_privacy_known_answers(secret, expected):
    assert exposure_by_rank(secret, REFERENCE) == pytest.approx(expected, abs=1e-12)


def test_exposure_above_all_value():
    assert round(exposure_by_rank(20.0, REFERENCE), 4) == -0.0875


def test_ties_count_against_the_secret():
    # TF Privacy sorts a reference ahead of a secret with the same loss: loss 4.0 ties reference 4, rank 5.
    assert exposure_by_rank(4.0, REFERENCE) == pytest.approx(4.0 - math.log2(5))
    assert exposure_by_rank(1.0, REFERENCE) == pytest.approx(3.0)  # ties the best reference: rank 2


def test_vectorised_matches_scalar_and_keeps_shape():
    rng = np.random.default_rng(0)
    reference = np.round(rng.normal(size=500), 1)  # many ties
    secrets = np.round(rng.normal(size=(4, 5)), 1)
    result = exposures(secrets, reference)
    assert result.shape == (4, 5)
    for secret, value in zip(secrets.ravel(), result.ravel()):
        assert value == exposure_by_rank(float(secret), reference)
        # Brute-force rank, independent of searchsorted.
        assert value == pytest.approx(math.log2(500) - math.log2(1 + int((reference <= secret).sum())))


def test_extrapolation_matches_tf_privacy_formula():
    # TF Privacy exposures_test.py, test_exposure_extrapolation: the exposure is -log2 of the fitted CDF.
    rng = np.random.default_rng(1)
    sampled = stats.skewnorm.rvs(4, 0, 1, size=5000, random_state=rng)
    secrets = stats.skewnorm.rvs(4, 0, 1, size=3, random_state=rng)
    fitted = stats.skewnorm.fit(sampled)
    for secret in secrets:
        expected = -np.log2(stats.skewnorm.cdf(secret, *fitted))
        assert exposure_by_extrapolation(secret, sampled, space_size=1e9) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("bits", [4, 8, 12])
def test_extrapolation_recovers_known_tail_fraction(bits):
    # A secret whose loss sits at the 2^-bits quantile of the candidate distribution has exposure = bits.
    sampled = stats.skewnorm.rvs(4, 0, 1, size=5000, random_state=np.random.default_rng(2))
    secret = stats.skewnorm.ppf(2.0**-bits, 4, 0, 1)
    assert exposure_by_extrapolation(secret, sampled, space_size=1e12) == pytest.approx(bits, abs=0.3)


def test_extrapolation_capped_at_space_size():
    sampled = stats.norm.rvs(size=500, random_state=np.random.default_rng(3))
    # Far in the tail the CDF underflows to 0 in linear space; the log-space value is capped at log2(space).
    assert exposure_by_extrapolation(-60.0, sampled, space_size=2**20) == pytest.approx(20.0)
    assert 0.0 <= exposure_by_extrapolation(10.0, sampled, space_size=2**20) < 1e-6


@pytest.mark.parametrize(
    "call",
    [
        lambda: exposure_by_rank(1.0, np.array([])),
        lambda: exposure_by_rank(np.nan, REFERENCE),
        lambda: exposures(np.array([1.0]), np.ones((2, 2))),
        lambda: exposure_by_extrapolation(1.0, np.ones(10), space_size=100),
        lambda: exposure_by_extrapolation(1.0, REFERENCE, space_size=1),
        lambda: exposure_by_extrapolation(1.0, np.array([1.0, np.inf, 2.0]), space_size=100),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(PrivauditError):
        call()

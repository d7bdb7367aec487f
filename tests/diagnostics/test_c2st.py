"""C2ST: ≈ 0.5 for one distribution, near the Bayes-optimal accuracy for separated ones."""

import numpy as np
import pytest
from scipy.stats import norm

from sbi_dmri.diagnostics.c2st import c2st

# one shape for every call: the classifier compiles once for the whole file
N, P = 500, 3


def _gaussians(seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(N, P))
    b = rng.normal(size=(N, P)) * scale
    b[:, 0] += shift
    return a, b


def test_identical_distributions_score_chance():
    acc = c2st(*_gaussians(0), seed=0)
    assert 0.44 <= acc <= 0.56  # chance 0.5, sd of 1000 held-out points ≈ 0.016


def test_separated_distributions_score_near_bayes_accuracy():
    # unit-variance Gaussians 4 sd apart: the best possible accuracy is Φ(2) = 0.977
    acc = c2st(*_gaussians(1, shift=4.0), seed=0)
    assert acc > 0.9
    assert acc <= norm.cdf(2.0) + 0.02


def test_detects_a_variance_mismatch_with_equal_means():
    # an over-confident posterior has the right mean and a narrower spread: a linear classifier
    # cannot see it; the MLP must. Bayes-optimal accuracy here (3-d, sd 1 vs 0.5) is 0.787.
    assert 0.65 < c2st(*_gaussians(2, scale=0.5), seed=0) < 0.80


def test_validates_input():
    a, b = _gaussians(3)
    with pytest.raises(ValueError):
        c2st(a, b[:, :2])
    with pytest.raises(ValueError):
        c2st(a[:4], b[:4], folds=5)

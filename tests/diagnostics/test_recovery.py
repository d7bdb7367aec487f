"""Recovery table (scalars and axes), axis averaging, posterior-to-prior width ratio."""

import numpy as np
import pytest

from sbi_dmri.diagnostics.recovery import (
    angular_error_deg,
    axis_mean,
    posterior_prior_width_ratio,
    recovery_table,
)
from sbi_dmri.diagnostics.toy import LinearGaussian


def _random_axes(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _perturb(rng, axes, angle_deg):
    """Rotate each axis by exactly angle_deg about a random perpendicular direction."""
    perp = np.cross(axes, rng.normal(size=axes.shape))
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    a = np.radians(angle_deg)
    return np.cos(a) * axes + np.sin(a) * perp


def test_angular_error_is_the_angle_between_axes_and_ignores_sign():
    rng = np.random.default_rng(0)
    n = _random_axes(rng, 1000)
    m = _perturb(rng, n, 10.0)
    np.testing.assert_allclose(angular_error_deg(m, n), 10.0, atol=1e-6)
    np.testing.assert_allclose(angular_error_deg(-m, n), 10.0, atol=1e-6)
    np.testing.assert_allclose(angular_error_deg(5 * m, -n), 10.0, atol=1e-6)  # norm-free
    assert angular_error_deg([1, 0, 0], [0, 1, 0]) == pytest.approx(90.0)


def test_recovery_table_scalars_and_axes_invariant_to_flips():
    rng = np.random.default_rng(1)
    n_true = _random_axes(rng, 500)
    n_est = _perturb(rng, n_true, 5.0)
    flips = np.where(rng.uniform(size=(500, 1)) < 0.5, -1.0, 1.0)
    d_true = rng.uniform(1.0, 3.0, 500)
    truths = {"orientation": n_true, "d_par": d_true}
    estimates = {"orientation": n_est, "d_par": d_true + 0.1 + rng.normal(0, 0.2, 500)}
    table = recovery_table(estimates, truths, ["orientation", "d_par"])
    flipped = recovery_table({**estimates, "orientation": flips * n_est}, truths, ["orientation", "d_par"])
    assert table["orientation"]["rmse"] == pytest.approx(5.0, abs=1e-6)
    assert flipped["orientation"] == table["orientation"]
    assert table["orientation"]["bias"] is None
    assert table["d_par"]["bias"] == pytest.approx(0.1, abs=0.03)
    assert table["d_par"]["rmse"] == pytest.approx(np.sqrt(0.1**2 + 0.2**2), abs=0.02)


def test_recovery_table_against_reference():
    rng = np.random.default_rng(2)
    truths = rng.normal(size=(2000, 2))
    good = truths + rng.normal(0, 0.1, size=(2000, 2))
    ref = truths + rng.normal(0, 0.2, size=(2000, 2))
    table = recovery_table(good, truths, ["a", "b"], reference=ref)
    for row in table.values():
        assert row["rmse_ratio"] == pytest.approx(0.5, abs=0.05)
        assert row["beats_reference"]
    worse = recovery_table(ref, truths, ["a", "b"], reference=good)
    assert not any(row["beats_reference"] for row in worse.values())


def test_axis_mean_handles_antipodal_draws():
    rng = np.random.default_rng(3)
    true = _random_axes(rng, 1)[0]
    draws = _perturb(rng, np.repeat(true[None], 400, axis=0), rng.uniform(0, 3, 400)[:, None])
    draws *= np.where(rng.uniform(size=(400, 1)) < 0.5, -1.0, 1.0)  # half flipped
    assert np.linalg.norm(draws.mean(axis=0)) < 0.3  # the naive mean collapses
    assert angular_error_deg(axis_mean(draws), true) < 0.5
    assert axis_mean(draws)[2] >= 0


def test_width_ratio_equals_posterior_to_prior_sd_on_the_toy():
    p = LinearGaussian.default()
    rng = np.random.default_rng(4)
    prior = rng.multivariate_normal(p.mu0, p.cov0, size=100_000)
    post = rng.multivariate_normal(np.zeros(3), p.posterior_cov, size=(20, 5000))
    expected = np.sqrt(np.diag(p.posterior_cov) / np.diag(p.cov0))
    ratio = posterior_prior_width_ratio(post, prior)
    np.testing.assert_allclose(ratio.mean(axis=0), expected, rtol=0.02)
    # Gaussian: the 90 % interval ratio equals the sd ratio
    interval = posterior_prior_width_ratio(post, prior, method="interval")
    np.testing.assert_allclose(interval.mean(axis=0), expected, rtol=0.03)
    # an unidentified parameter (posterior = prior) has ratio ≈ 1
    same = posterior_prior_width_ratio(prior[None, :5000], prior)
    np.testing.assert_allclose(same, 1.0, atol=0.03)

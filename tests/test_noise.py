"""Noise: Gaussian and Rician draws, and the stable Rician log-likelihood against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from sbi_dmri.noise import add_noise, gaussian_log_likelihood, log_likelihood, rician_log_likelihood


@pytest.mark.parametrize("nu", [0.0, 0.3, 1.0])
def test_rician_draws_match_the_rice_distribution(nu):
    snr, n = 20.0, 200000
    y = np.asarray(add_noise(jax.random.PRNGKey(0), jnp.full((n,), nu), snr, kind="rician"))
    sigma = 1 / snr
    mean, var = stats.rice.stats(nu / sigma, scale=sigma, moments="mv")
    assert y.mean() == pytest.approx(float(mean), abs=4 * np.sqrt(var / n))
    assert y.var() == pytest.approx(float(var), rel=0.02)


def test_gaussian_draws():
    y = np.asarray(add_noise(jax.random.PRNGKey(1), jnp.full((100000,), 0.5), 50.0, kind="gaussian"))
    assert y.mean() == pytest.approx(0.5, abs=4 * 0.02 / np.sqrt(1e5))
    assert y.std() == pytest.approx(0.02, rel=0.01)
    with pytest.raises(ValueError, match="unknown noise"):
        add_noise(jax.random.PRNGKey(1), jnp.ones(3), 10.0, kind="poisson")


def test_rician_log_likelihood_against_scipy(x64):
    sigma = 0.05
    for nu in (0.0, 0.2, 1.0):
        y = np.linspace(0.001, 1.5, 50)
        expected = stats.rice.logpdf(y / sigma, nu / sigma) - np.log(sigma)
        np.testing.assert_allclose(rician_log_likelihood(y, nu, sigma), expected, rtol=1e-9, atol=1e-9)


def test_rician_log_likelihood_is_stable_and_normalised(x64):
    # yν/σ² = 4e6: I0 overflows without scaling; the density must still integrate to 1.
    sigma, nu = 1e-3, 2.0
    assert np.isfinite(float(rician_log_likelihood(2.001, nu, sigma)))
    total, _ = integrate.quad(lambda y: np.exp(float(rician_log_likelihood(y, nu, sigma))), nu - 0.02, nu + 0.02, points=[nu])
    assert total == pytest.approx(1.0, abs=1e-6)
    assert float(rician_log_likelihood(0.0, nu, sigma)) == -np.inf


def test_summed_log_likelihood():
    y, mu = jnp.array([[0.5, 0.6]]), jnp.array([[0.5, 0.5]])
    assert float(log_likelihood(y, mu, 0.1)[0]) == pytest.approx(float(gaussian_log_likelihood(y, mu, 0.1).sum()))


def test_estimate_snr_recovers_sigma_from_b0_repeats_and_refuses_too_few():
    """One σ from the median b0 variance (χ² median corrected), S0 per voxel; Rician magnitude data."""
    from sbi_dmri.noise import estimate_snr

    rng = np.random.default_rng(0)
    for n_b0 in (2, 6):
        s0 = rng.uniform(200.0, 800.0, (20000, 1))
        y = np.abs(s0 + 20.0 * rng.normal(size=(20000, n_b0 + 5)) + 20j * rng.normal(size=(20000, n_b0 + 5)))
        b0 = np.arange(n_b0 + 5) < n_b0
        snr, sigma = estimate_snr(y, b0)
        assert abs(sigma / 20.0 - 1.0) < 0.03
        assert abs(np.median(snr / (s0[:, 0] / 20.0)) - 1.0) < 0.03
    with pytest.raises(ValueError, match="at least 2 b=0"):
        estimate_snr(y, np.arange(n_b0 + 5) < 1)

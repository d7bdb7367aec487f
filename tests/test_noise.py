"""Noise: Gaussian and Rician draws, and the stable Rician log-likelihood against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from sbi_dmri.noise import (add_noise, gaussian_log_likelihood, log_likelihood, log_likelihood_s0_marginal,
                            rician_log_likelihood)


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


def test_s0_marginal_is_the_density_of_signals_divided_by_their_b0():
    """Physics of the b = 0 normalisation: draw raw Rician signals (one b = 0, two weighted, SNR 5, where the
    Rician floor matters), divide by the b = 0 value, and compare a histogram of the two ratios with
    exp(log_likelihood_s0_marginal), which must be their normalised density (no free constant)."""
    snr, n, half = 5.0, 4_000_000, 0.02
    mu = np.array([1.0, 0.45, 0.2])
    z = np.asarray(add_noise(jax.random.PRNGKey(3), jnp.broadcast_to(jnp.asarray(mu, jnp.float32), (n, 3)), snr,
                             kind="rician"), np.float64)
    r = z[:, 1:] / z[:, :1]
    for point in ([0.45, 0.2], [0.6, 0.35], [0.35, 0.3]):
        inside = np.all(np.abs(r - np.array(point)) < half, axis=1)
        empirical = inside.mean() / (2 * half) ** 2
        se = np.sqrt(inside.sum()) / n / (2 * half) ** 2
        y = jnp.asarray([1.0] + point)
        density = float(np.exp(log_likelihood_s0_marginal(y, jnp.asarray(mu), 1.0 / snr, "rician")))
        assert empirical == pytest.approx(density, abs=4 * se + 0.02 * density), point


@pytest.mark.parametrize("snr", [5.0, 10.0, 50.0])
def test_s0_marginal_quadrature_against_a_fine_grid(x64, snr):
    """The 5-node Gauss–Hermite integral over the b = 0 scale equals a 200001-point grid to 1e-3 nats
    (the single-node Laplace form is 0.27 nats off at SNR 10, and its error varies with the signal)."""
    rng = np.random.default_rng(0)
    M = 60
    mu = np.concatenate([np.ones(5), rng.uniform(0.05, 0.6, M - 5)])
    z = np.asarray(add_noise(jax.random.PRNGKey(int(snr)), jnp.asarray(mu), snr, kind="rician"))
    y = z / z[:5].mean()
    u = np.linspace(0.5, 1.5, 200001)
    g = (M - 1) * np.log(u) + np.asarray(log_likelihood(u[:, None] * y[None], mu[None], 1 / snr, "rician"))
    grid = np.log(np.sum(np.exp(g - g.max())) * (u[1] - u[0])) + g.max()
    assert float(log_likelihood_s0_marginal(jnp.asarray(y), jnp.asarray(mu), 1 / snr, "rician")) == pytest.approx(
        grid, abs=1e-3)


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


def _ball_stick_scan(rng, shells, n_dir, sigma, n_voxels=1000):
    """Raw Rician magnitudes of random ball-and-stick voxels, ONE b = 0, S0 ∈ [200, 800], noise σ (numpy only)."""
    def unit(n):
        v = rng.normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    b = np.concatenate([[0.0]] + [np.full(n_dir, s) for s in shells])
    g = np.concatenate([[[1.0, 0.0, 0.0]]] + [unit(n_dir) for _ in shells])
    n = unit(n_voxels)
    f, d_par, d_iso = (rng.uniform(lo, hi, (n_voxels, 1)) for lo, hi in ((0.1, 0.8), (1.0, 3.0), (1.0, 3.0)))
    e = f * np.exp(-b[None, :] * d_par * (n @ g.T) ** 2) + (1.0 - f) * np.exp(-b[None, :] * d_iso)
    s0 = rng.uniform(200.0, 800.0, (n_voxels, 1))
    y = np.abs(s0 * e + sigma * rng.normal(size=e.shape) + 1j * sigma * rng.normal(size=e.shape))
    return y, b, g, s0[:, 0]


@pytest.mark.parametrize("shells, n_dir, model", [((1.0,), 64, "DTI"), ((1.0, 2.0, 3.0), 30, "DKI")])
def test_sigma_from_fit_residuals_recovers_known_sigma_with_a_single_b0(shells, n_dir, model):
    """Single-b0 fallback: σ from DTI (one shell) or DKI (multi-shell) residuals, within 15 % at two noise
    levels (a constant or an S0-scaled answer cannot pass both)."""
    from sbi_dmri.noise import estimate_sigma_from_residuals

    rng = np.random.default_rng(1)
    for sigma in (12.0, 30.0):
        y, b, g, _ = _ball_stick_scan(rng, shells, n_dir, sigma)
        est, used, n_fit = estimate_sigma_from_residuals(y, b, g)
        assert used == model and n_fit == y.shape[0]
        assert abs(est / sigma - 1.0) < 0.15, (sigma, est)


def test_sigma_from_fit_residuals_refuses_too_few_measurements():
    from sbi_dmri.noise import estimate_sigma_from_residuals

    y, b, g, _ = _ball_stick_scan(np.random.default_rng(2), (1.0,), 8, 20.0, n_voxels=50)
    with pytest.raises(ValueError, match="degrees of freedom"):
        estimate_sigma_from_residuals(y, b, g)


def test_resolve_snr_falls_back_to_fit_residuals_with_one_b0_and_keeps_the_b0_path(caplog):
    """resolve_snr: one b0 → residual estimate (S0 per voxel / σ), said in the note and logged; given
    SNRs are used as they are."""
    import logging
    from types import SimpleNamespace

    from sbi_dmri.acquisition import Acquisition
    from sbi_dmri.pretrained import resolve_snr

    rng = np.random.default_rng(3)
    y, b, g, s0 = _ball_stick_scan(rng, (1.0,), 64, 20.0)
    acq = Acquisition.pgse(b, g, delta=np.full(b.shape, 20.0), Delta=np.full(b.shape, 35.0))
    net = SimpleNamespace(meta={"noise": {"snr": (2.0, 100.0)}})
    with caplog.at_level(logging.WARNING):
        snr, note = resolve_snr(net, y, acq)
    assert "residuals of a DTI fit" in note and "residuals" in caplog.text
    true_snr = s0 / 20.0
    assert abs(np.median(snr / true_snr) - 1.0) < 0.15
    snr_given, note_given = resolve_snr(net, y, acq, snr=25.0)
    assert np.all(snr_given == 25.0) and "given" in note_given

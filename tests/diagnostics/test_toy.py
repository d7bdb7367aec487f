"""The toy problem's posterior is the exact Gaussian conditional."""

import jax
import numpy as np

from sbi_dmri.diagnostics.toy import LinearGaussian, toy_test_set


def test_exact_posterior_equals_gaussian_conditioning(x64):
    # Independent derivation: condition the joint Gaussian of (θ, x) via the Schur complement.
    p = LinearGaussian.default(d=3, m=5)
    S = p.A @ p.cov0 @ p.A.T + p.sigma**2 * np.eye(5)
    K = p.cov0 @ p.A.T @ np.linalg.inv(S)
    x = np.random.default_rng(0).normal(size=(4, 5))
    mean, cov = p.exact_posterior(x)
    expected_mean = p.mu0[None, :] + (x - (p.A @ p.mu0)[None, :]) @ K.T
    np.testing.assert_allclose(np.asarray(mean), expected_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(cov), p.cov0 - K @ p.A @ p.cov0, rtol=1e-10, atol=1e-12)


def test_posterior_samples_moments_and_perturbations():
    draws, truths = toy_test_set(0, 50, 4000)
    p = LinearGaussian.default()
    sd = np.sqrt(np.diag(p.posterior_cov))
    np.testing.assert_allclose(draws.std(axis=1).mean(axis=0), sd, rtol=0.02)
    narrow, _ = toy_test_set(0, 50, 4000, variance_scale=0.5)
    np.testing.assert_allclose(narrow.std(axis=1).mean(axis=0), sd * np.sqrt(0.5), rtol=0.02)
    shifted, _ = toy_test_set(0, 50, 4000, mean_shift=1.0)
    # same seed, same base draws: the shift is exactly one posterior sd per parameter
    np.testing.assert_allclose((shifted - draws).mean(axis=(0, 1)), sd, rtol=1e-4)


def test_jax_sampling_matches_prior_simulator_and_posterior():
    p = LinearGaussian.default()

    @jax.jit  # one compilation instead of one per eager primitive
    def generate(key):
        k1, k2, k3 = jax.random.split(key, 3)
        theta = p.sample_prior(k1, 100_000)
        x = p.simulate(k2, theta)
        exact = p.posterior_samples(k3, x[:8], 20_000)
        wrong = p.posterior_samples(k3, x[:8], 20_000, mean_shift=1.0, variance_scale=0.5)
        return theta, x, exact, wrong, p.exact_posterior(x[:8])[0]

    theta, x, exact, wrong, mean = map(np.asarray, generate(jax.random.PRNGKey(0)))
    np.testing.assert_allclose(theta.mean(axis=0), p.mu0, atol=0.015)
    np.testing.assert_allclose(np.cov(theta.T), p.cov0, atol=0.02)
    np.testing.assert_allclose((x - theta @ p.A.T).std(axis=0), p.sigma, rtol=0.01)
    sd = np.sqrt(np.diag(p.posterior_cov))
    np.testing.assert_allclose(exact.mean(axis=1), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(exact[0].T), p.posterior_cov, atol=0.01)
    np.testing.assert_allclose(wrong.mean(axis=1) - mean, np.broadcast_to(sd, (8, 3)), atol=0.02)
    np.testing.assert_allclose(wrong.std(axis=1).mean(axis=0), sd * np.sqrt(0.5), rtol=0.02)


def test_numpy_test_set_matches_exact_posterior_formula():
    # toy_test_set re-derives the posterior mean in NumPy; check it against exact_posterior.
    p = LinearGaussian.default()
    draws, theta = toy_test_set(5, 4, 50_000, problem=p)
    rng = np.random.default_rng(5)  # replay the generator to recover x
    rng.normal(size=(4, 3))
    x = theta @ p.A.T + p.sigma * rng.normal(size=(4, 5))
    mean, _ = p.exact_posterior(x)
    np.testing.assert_allclose(draws.mean(axis=1), np.asarray(mean), atol=0.01)

"""Watson/Bingham dispersion: against brute-force quadrature on a dense sphere, limits, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri.kernels import gaussian, watson


def fibonacci_sphere(n):
    """n nearly uniform points on the unit sphere (equal-area Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z**2)
    phi = np.pi * (1.0 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


DENSE = fibonacci_sphere(200_000)

# Jitted once per dtype/shape: eager dispatch of the quadrature's many small ops is the slow part.
watson_stick = jax.jit(watson.watson_stick)
watson_zeppelin = jax.jit(watson.watson_zeppelin)
bingham_stick = jax.jit(watson.bingham_stick)


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def random_directions(n, seed=0):
    g = np.random.default_rng(seed).normal(size=(n, 3))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def brute_force(log_density, bvalues, directions, d_par):
    """∫ P(n) exp(−b d (ĝ·n)²) dn on the dense Fibonacci sphere (equal weights)."""
    logp = log_density(DENSE)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    return np.exp(-bvalues[:, None] * d_par * (directions @ DENSE.T) ** 2) @ p


@pytest.mark.parametrize("kappa", [0.0, 0.3, 2.0, 9.0, 16.0, 40.0, 64.0])
def test_watson_stick_matches_dense_sphere(x64, kappa):
    g = random_directions(30)
    b = np.repeat([1.0, 2.0, 3.0], 10)
    mu = unit([0.2, -0.4, 0.9])
    ref = brute_force(lambda n: kappa * (n @ mu) ** 2, b, g, 2.5)
    e = watson_stick(jnp.asarray(b), jnp.asarray(g), jnp.asarray(mu), jnp.float64(kappa), 2.5)
    np.testing.assert_allclose(np.asarray(e), ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(e), ref, atol=2e-6)  # measured: quadrature is this good


def test_watson_zeppelin_matches_dense_sphere(x64):
    g = random_directions(20, seed=1)
    b = np.repeat([1.0, 3.0], 10)
    mu = unit([1.0, 1.0, 0.0])
    kappa, d_par, d_perp = 5.0, 2.0, 0.6
    ref = np.exp(-b * d_perp) * brute_force(lambda n: kappa * (n @ mu) ** 2, b, g, d_par - d_perp)
    e = watson_zeppelin(jnp.asarray(b), jnp.asarray(g), jnp.asarray(mu), kappa, d_par, d_perp)
    np.testing.assert_allclose(np.asarray(e), ref, atol=1e-5)


def test_large_kappa_is_the_stick_and_zero_is_the_spherical_mean(x64):
    g = jnp.asarray(random_directions(24, seed=2))
    b = jnp.linspace(0.0, 3.0, 24)
    mu = jnp.asarray(unit([0.0, 0.3, 1.0]))
    stick = gaussian.stick(b, g, mu, 2.0)
    # Dispersion about the axis shrinks like 1/κ: at κ = 1e6 the gap is O(b d /κ).
    np.testing.assert_allclose(watson_stick(b, g, mu, 1e6, 2.0), stick, atol=2e-5)
    np.testing.assert_allclose(
        watson_stick(b, g, mu, 0.0, 2.0), gaussian.stick_spherical_mean(b, 2.0), atol=1e-10
    )


def test_watson_is_one_at_b0_float32():
    g = jnp.asarray(random_directions(5), jnp.float32)
    mu = jnp.asarray(unit([0, 0, 1]), jnp.float32)
    for kappa in [0.0, 1e-3, 1.0, 64.0, 500.0]:
        e = watson_stick(jnp.zeros(5), g, mu, jnp.float32(kappa), jnp.float32(2.0))
        assert e.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(e), 1.0, atol=1e-6)


def test_odi_kappa_round_trip_and_known_values(x64):
    kappa = jnp.asarray([0.0, 0.01, 0.5, 1.0, 10.0, 64.0])
    odi = watson.odi_from_kappa(kappa)
    np.testing.assert_allclose(odi, 2.0 / np.pi * np.arctan2(1.0, np.asarray(kappa)), rtol=1e-12)
    np.testing.assert_allclose(watson.kappa_from_odi(odi), kappa, rtol=1e-9, atol=1e-12)
    assert float(watson.odi_from_kappa(1.0)) == pytest.approx(0.5)


@pytest.mark.parametrize("kappa", [0.0, 1e-6, 0.7, 12.0, 64.0])
def test_watson_pdf_integrates_to_one(x64, kappa):
    mu = jnp.asarray(unit([0.5, 0.5, -0.7]))
    pdf = watson.watson_pdf(jnp.asarray(DENSE), mu, kappa)
    assert float(jnp.mean(pdf)) * 4.0 * np.pi == pytest.approx(1.0, abs=1e-6)


def test_watson_pdf_normaliser_matches_scipy(x64):
    from scipy.special import hyp1f1

    for kappa in [1e-5, 0.2, 3.0, 30.0, 64.0]:
        expected = np.log(4 * np.pi * hyp1f1(0.5, 1.5, kappa))
        assert float(watson.watson_log_normaliser(kappa)) == pytest.approx(expected, rel=1e-10)


def _stick_loss(k):
    g = jnp.asarray(random_directions(6, seed=3))
    mu = jnp.asarray(unit([0.1, 0.2, 1.0]))
    return jnp.sum(watson.watson_stick(jnp.full(6, 2.0), g, mu, k, 1.7) ** 2)


stick_loss, stick_loss_grad = jax.jit(_stick_loss), jax.jit(jax.grad(_stick_loss))


@pytest.mark.parametrize("kappa", [0.0, 0.5, 20.0])
def test_gradient_wrt_kappa_matches_finite_differences(x64, kappa):
    kappa = jnp.float64(kappa)
    grad = stick_loss_grad(kappa)
    h = 1e-6
    lo = kappa if kappa == 0.0 else kappa - h  # one-sided at the boundary κ = 0
    fd = (stick_loss(kappa + h) - stick_loss(lo)) / (kappa + h - lo)
    assert np.isfinite(float(grad))
    assert float(grad) == pytest.approx(float(fd), rel=1e-4, abs=1e-7)


def test_gradient_float32_finite_at_kappa_zero():
    g = jnp.asarray(random_directions(6, seed=3), jnp.float32)
    mu = jnp.asarray(unit([0.1, 0.2, 1.0]), jnp.float32)
    grads = jax.jit(jax.grad(lambda k, d: jnp.sum(watson_zeppelin(jnp.full(6, 2.0), g, mu, k, d, 0.5)), argnums=(0, 1)))(
        jnp.float32(0.0), jnp.float32(1.7)
    )
    assert all(np.isfinite(float(x)) for x in grads)


def test_bingham_matches_dense_sphere_and_reduces_to_watson(x64):
    g = random_directions(20, seed=4)
    b = np.repeat([1.0, 3.0], 10)
    mu, psi = unit([0.3, 0.1, 0.9]), 0.4
    frame = np.asarray(gaussian.tensor_frame(jnp.asarray(mu), psi))
    k1, k2 = 20.0, 8.0
    ref = brute_force(lambda n: k1 * (n @ frame[0]) ** 2 + k2 * (n @ frame[1]) ** 2, b, g, 2.0)
    e = bingham_stick(jnp.asarray(b), jnp.asarray(g), jnp.asarray(mu), psi, k1, k2, 2.0)
    np.testing.assert_allclose(np.asarray(e), ref, atol=1e-4)
    w = watson_stick(jnp.asarray(b), jnp.asarray(g), jnp.asarray(mu), k1, 2.0)
    e0 = bingham_stick(jnp.asarray(b), jnp.asarray(g), jnp.asarray(mu), psi, k1, 0.0, 2.0)
    np.testing.assert_allclose(np.asarray(e0), np.asarray(w), atol=1e-8)


def test_bingham_normaliser_matches_dense_sphere(x64):
    k1, k2 = 10.0, 4.0
    n = DENSE
    # bingham_log_normaliser works in the identity frame: μ₁ = e_x, μ₂ = e_y.
    expected = np.log(4 * np.pi * np.mean(np.exp(k1 * n[:, 0] ** 2 + k2 * n[:, 1] ** 2)))
    assert float(watson.bingham_log_normaliser(k1, k2)) == pytest.approx(expected, abs=1e-6)

"""Cylinder kernels: Söderman, Callaghan, GPD, Neuman — closed forms, limits, gradients, float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

from sbi_dmri.kernels import cylinder as cyl
from sbi_dmri.kernels.special import CYLINDER_ROOTS_NK, J1_ZEROS

callaghan = jax.jit(cyl.callaghan_perpendicular)
KERNELS = {
    "soderman": cyl.cylinder_soderman, "callaghan": cyl.cylinder_callaghan,
    "gpd": cyl.cylinder_gpd, "neuman": cyl.cylinder_neuman,
}
JITTED = {k: jax.jit(f) for k, f in KERNELS.items()}


def test_soderman_is_the_bessel_form_factor_with_zeros_at_3_8317(x64):
    x = np.linspace(0.0, 30.0, 301)
    ref = np.ones_like(x)
    ref[1:] = (2 * sps.j1(x[1:]) / x[1:]) ** 2
    assert np.allclose(cyl.soderman_perpendicular(jnp.asarray(x)), ref, atol=1e-14)
    zeros = cyl.soderman_perpendicular(jnp.asarray(J1_ZEROS[:3]))
    assert np.all(np.asarray(zeros) < 1e-28) and abs(J1_ZEROS[0] - 3.8317) < 1e-4


def test_callaghan_sums_to_one_at_zero_delta(x64):
    """Completeness: at Δ = 0 the series is Σ |⟨plane wave|mode⟩|² = 1 (truncation < 2e-4, qR ≤ 15)."""
    x = jnp.asarray(np.concatenate([np.linspace(0.0, 15.0, 151), CYLINDER_ROOTS_NK[1:4, 1:3].ravel()]))
    e = np.asarray(callaghan(x, 2.0, jnp.zeros_like(x), 5.0))
    assert np.all(e <= 1.0 + 1e-12) and np.all(1.0 - e < 2e-4)
    assert np.all(1.0 - e[:31] < 1e-5)  # qR ≤ 3


def test_callaghan_tends_to_soderman_at_long_delta(x64):
    x = jnp.linspace(0.0, 15.0, 61)
    long = callaghan(x, 2.0, jnp.full_like(x, 500.0), 5.0)  # DΔ/R² = 40
    assert np.allclose(long, cyl.soderman_perpendicular(x), atol=1e-12)
    mid = callaghan(x, 2.0, jnp.full_like(x, 5.0), 5.0)  # DΔ/R² = 0.4: between the two
    assert np.all(np.asarray(mid) >= np.asarray(cyl.soderman_perpendicular(x)) - 1e-12)


def test_callaghan_is_smooth_through_the_removable_singularities():
    """At qR = β_nk the direct ratio is 0/0; the Taylor branch must join it continuously (float32)."""
    beta = float(CYLINDER_ROOTS_NK[2, 1])
    x = jnp.asarray(beta + np.linspace(-0.05, 0.05, 41), jnp.float32)
    e = np.asarray(callaghan(x, 1.0, jnp.full_like(x, 2.0), 4.0))
    assert np.all(np.isfinite(e)) and np.max(np.abs(np.diff(e, 2))) < 1e-5


def test_perpendicular_wavenumber_is_q_sin_theta(x64):
    """E(ĝ at angle θ) = E⊥(q sinθ) · exp(−bD cos²θ) for every kernel."""
    theta = np.linspace(0.0, np.pi, 7)
    g = np.stack([np.sin(theta), np.zeros(7), np.cos(theta)], axis=1)
    b, d, Dl = np.full(7, 2.5), np.full(7, 10.0), np.full(7, 30.0)
    n = np.array([0.0, 0.0, 1.0])
    q = np.sqrt(b / (Dl - d / 3))
    e = JITTED["soderman"](b, g, d, Dl, n, 4.0, 1.7)
    ref = (2 * sps.j1(q * np.sin(theta) * 4.0 + 1e-300) / (q * np.sin(theta) * 4.0 + 1e-300)) ** 2
    ref = np.where(np.sin(theta) < 1e-12, 1.0, ref) * np.exp(-b * 1.7 * np.cos(theta) ** 2)
    assert np.allclose(e, ref, atol=1e-12)
    along = JITTED["gpd"](b, g, d, Dl, n, 4.0, 1.7)
    assert np.isclose(along[0], np.exp(-2.5 * 1.7), rtol=1e-12)  # ĝ ∥ axis: free


def test_gradients_equal_finite_differences(x64):
    """∂E/∂R and ∂E/∂D per measurement equal central differences; zero (finite) at b = 0."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    b = np.array([0.0, 0.5, 1.0, 3.0, 6.0, 10.0])
    d, Dl = np.full(6, 8.0), np.full(6, 25.0)
    n = np.array([0.0, 0.6, 0.8])
    for name, k in KERNELS.items():
        f = jax.jit(lambda R, D, k=k: k(b, g, d, Dl, n, R, D))
        jR, jD = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(3.0, 1.2)
        eps = 1e-6
        fdR = (f(3.0 + eps, 1.2) - f(3.0 - eps, 1.2)) / (2 * eps)
        fdD = (f(3.0, 1.2 + eps) - f(3.0, 1.2 - eps)) / (2 * eps)
        assert np.allclose(jR, fdR, rtol=1e-6, atol=1e-9), name
        assert np.allclose(jD, fdD, rtol=1e-6, atol=1e-9), name
        assert jR[0] == 0.0 and jD[0] == 0.0, name  # b = 0


@pytest.mark.slow
def test_float32_finite_and_bounded_over_the_range():
    """R 0.1–20 µm, D 0.1–3.5, b ≤ 10, δ 1–40, Δ ≤ 100: E finite in [0, 1], gradients finite."""
    b = np.array([0.0, 0.01, 1.0, 10.0, 10.0, 3.0, 10.0])
    delta = np.array([1.0, 1.0, 10.0, 1.0, 40.0, 40.0, 5.0])
    Delta = np.array([1.0, 100.0, 20.0, 100.0, 40.0, 100.0, 5.0])
    g = np.tile([0.6, 0.0, 0.8], (7, 1))
    n = jnp.array([0.0, 0.0, 1.0])
    R, D = np.meshgrid([0.1, 0.5, 2.0, 8.0, 20.0], [0.1, 3.5])
    R, D = jnp.asarray(R.ravel(), jnp.float32), jnp.asarray(D.ravel(), jnp.float32)
    for name, k in KERNELS.items():
        def value_and_grads(r, dif, k=k):
            e = k(b, g, delta, Delta, n, r, dif)
            return e, jax.grad(lambda r, dif: jnp.sum(k(b, g, delta, Delta, n, r, dif)), argnums=(0, 1))(r, dif)

        e, grads = jax.jit(jax.vmap(value_and_grads))(R, D)
        assert e.dtype == jnp.float32 and np.all(np.isfinite(e)), name
        assert np.all((e >= 0) & (e <= 1)) and np.allclose(e[:, 0], 1.0), name
        assert all(np.all(np.isfinite(x)) for x in grads), name

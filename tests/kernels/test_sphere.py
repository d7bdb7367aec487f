"""Sphere kernels: Söderman, Balinov (finite Δ), GPD, Neuman — closed forms, limits, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

from sbi_dmri.kernels import sphere
from sbi_dmri.kernels.special import SPHERE_ROOTS_NK, SPHERICAL_J1_ZEROS

balinov = jax.jit(sphere.balinov_sphere)
KERNELS = {
    "soderman": sphere.sphere_soderman, "callaghan": sphere.sphere_callaghan,
    "gpd": sphere.sphere_gpd, "neuman": sphere.sphere_neuman,
}


def test_soderman_is_3j1_over_x_squared_with_zeros_at_4_4934(x64):
    x = np.linspace(0.01, 30.0, 300)
    ref = (3 * sps.spherical_jn(1, x) / x) ** 2
    assert np.allclose(sphere.soderman_sphere(jnp.asarray(x)), ref, atol=1e-14)
    assert float(sphere.soderman_sphere(jnp.asarray(0.0))) == 1.0
    assert np.all(np.asarray(sphere.soderman_sphere(jnp.asarray(SPHERICAL_J1_ZEROS[:3]))) < 1e-28)
    assert abs(SPHERICAL_J1_ZEROS[0] - 4.4934) < 1e-4


def test_balinov_sums_to_one_at_zero_delta(x64):
    """Completeness at Δ = 0 (needs the zero-root prefactor 9, not 6): truncation < 2e-4 for qR ≤ 15."""
    x = jnp.asarray(np.concatenate([np.linspace(0.0, 15.0, 151), SPHERE_ROOTS_NK[1:4, 1:3].ravel()]))
    e = np.asarray(balinov(x, 2.0, jnp.zeros_like(x), 5.0))
    assert np.all(e <= 1.0 + 1e-12) and np.all(1.0 - e < 2e-4)
    assert np.all(1.0 - e[:31] < 1e-5)


def test_balinov_tends_to_soderman_at_long_delta(x64):
    x = jnp.linspace(0.0, 15.0, 61)
    assert np.allclose(balinov(x, 2.0, jnp.full_like(x, 500.0), 5.0), sphere.soderman_sphere(x), atol=1e-12)


def test_balinov_smooth_through_removable_singularities():
    beta = float(SPHERE_ROOTS_NK[3, 1])
    x = jnp.asarray(beta + np.linspace(-0.05, 0.05, 41), jnp.float32)
    e = np.asarray(balinov(x, 1.0, jnp.full_like(x, 2.0), 4.0))
    assert np.all(np.isfinite(e)) and np.max(np.abs(np.diff(e, 2))) < 1e-5


def test_gradients_equal_finite_differences(x64):
    b = np.array([0.0, 0.5, 1.0, 3.0, 6.0, 10.0])
    d, Dl = np.full(6, 8.0), np.full(6, 25.0)
    for name, k in KERNELS.items():
        f = jax.jit(lambda R, D, k=k: k(b, d, Dl, R, D))
        jR, jD = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(3.0, 1.2)
        eps = 1e-6
        assert np.allclose(jR, (f(3.0 + eps, 1.2) - f(3.0 - eps, 1.2)) / (2 * eps), rtol=1e-6, atol=1e-9), name
        assert np.allclose(jD, (f(3.0, 1.2 + eps) - f(3.0, 1.2 - eps)) / (2 * eps), rtol=1e-6, atol=1e-9), name
        assert jR[0] == 0.0 and jD[0] == 0.0


@pytest.mark.slow
def test_float32_finite_and_bounded_over_the_range():
    b = np.array([0.0, 0.01, 1.0, 10.0, 10.0, 3.0, 10.0])
    delta = np.array([1.0, 1.0, 10.0, 1.0, 40.0, 40.0, 5.0])
    Delta = np.array([1.0, 100.0, 20.0, 100.0, 40.0, 100.0, 5.0])
    R, D = np.meshgrid([0.1, 0.5, 2.0, 8.0, 20.0], [0.1, 3.5])
    R, D = jnp.asarray(R.ravel(), jnp.float32), jnp.asarray(D.ravel(), jnp.float32)
    for name, k in KERNELS.items():
        def value_and_grads(r, dif, k=k):
            e = k(b, delta, Delta, r, dif)
            return e, jax.grad(lambda r, dif: jnp.sum(k(b, delta, Delta, r, dif)), argnums=(0, 1))(r, dif)

        e, grads = jax.jit(jax.vmap(value_and_grads))(R, D)
        assert e.dtype == jnp.float32 and np.all(np.isfinite(e)), name
        assert np.all((e >= 0) & (e <= 1)) and np.allclose(e[:, 0], 1.0), name
        assert all(np.all(np.isfinite(x)) for x in grads), name

"""Parallel planes: Söderman, Tanner–Stejskal, GPD, Neuman; free along the planes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri.kernels import planes

tanner = jax.jit(planes.tanner_planes)
KERNELS = {"soderman": planes.planes_soderman, "tanner": planes.planes_tanner,
           "gpd": planes.planes_gpd, "neuman": planes.planes_neuman}


def test_soderman_closed_form(x64):
    x = np.linspace(0.01, 40.0, 200)
    assert np.allclose(planes.soderman_planes(jnp.asarray(x)), 2 * (1 - np.cos(x)) / x**2, atol=1e-13)
    assert np.all(np.asarray(planes.soderman_planes(jnp.asarray(2 * np.pi * np.arange(1, 4)))) < 1e-28)


def test_tanner_sums_to_one_at_zero_delta_and_tends_to_soderman(x64):
    x = jnp.asarray(np.concatenate([np.linspace(0.0, 40.0, 161), np.pi * np.arange(1, 6)]))
    e = np.asarray(tanner(x, 2.0, jnp.zeros_like(x), 5.0))
    assert np.all(e <= 1 + 1e-12) and np.all(1 - e < 5e-5)
    long = tanner(x, 2.0, jnp.full_like(x, 200.0), 5.0)
    assert np.allclose(long, planes.soderman_planes(x), atol=1e-12)


def test_free_along_the_planes(x64):
    g = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    b, d, Dl = np.full(3, 2.0), np.full(3, 10.0), np.full(3, 30.0)
    n = np.array([0.0, 0.0, 1.0])
    for name, k in KERNELS.items():
        e = np.asarray(k(b, g, d, Dl, n, 4.0, 1.5))
        assert np.allclose(e[:2], np.exp(-2.0 * 1.5), rtol=1e-12), name
        assert e[2] > np.exp(-2.0 * 1.5), name  # restricted across


def test_gradients_equal_finite_differences(x64):
    g = np.tile([0.36, 0.48, 0.8], (5, 1))
    b = np.array([0.0, 0.5, 2.0, 5.0, 10.0])
    d, Dl = np.full(5, 8.0), np.full(5, 25.0)
    n = np.array([0.0, 0.0, 1.0])
    for name, k in KERNELS.items():
        f = jax.jit(lambda L, D, k=k: k(b, g, d, Dl, n, L, D))
        jL, jD = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(6.0, 1.2)
        eps = 1e-6
        assert np.allclose(jL, (f(6.0 + eps, 1.2) - f(6.0 - eps, 1.2)) / (2 * eps), rtol=1e-6, atol=1e-9), name
        assert np.allclose(jD, (f(6.0, 1.2 + eps) - f(6.0, 1.2 - eps)) / (2 * eps), rtol=1e-6, atol=1e-9), name


@pytest.mark.slow
def test_float32_finite_and_bounded_over_the_range():
    b = np.array([0.0, 0.01, 1.0, 10.0, 10.0, 3.0, 10.0])
    delta = np.array([1.0, 1.0, 10.0, 1.0, 40.0, 40.0, 5.0])
    Delta = np.array([1.0, 100.0, 20.0, 100.0, 40.0, 100.0, 5.0])
    g = np.tile([0.6, 0.0, 0.8], (7, 1))
    n = jnp.array([0.0, 0.0, 1.0])
    L, D = np.meshgrid([0.2, 1.0, 4.0, 16.0, 40.0], [0.1, 3.5])
    L, D = jnp.asarray(L.ravel(), jnp.float32), jnp.asarray(D.ravel(), jnp.float32)
    for name, k in KERNELS.items():
        def value_and_grads(s, dif, k=k):
            e = k(b, g, delta, Delta, n, s, dif)
            return e, jax.grad(lambda s, dif: jnp.sum(k(b, g, delta, Delta, n, s, dif)), argnums=(0, 1))(s, dif)

        e, grads = jax.jit(jax.vmap(value_and_grads))(L, D)
        assert e.dtype == jnp.float32 and np.all(np.isfinite(e)), name
        assert np.all((e >= 0) & (e <= 1)) and np.allclose(e[:, 0], 1.0), name
        assert all(np.all(np.isfinite(x)) for x in grads), name

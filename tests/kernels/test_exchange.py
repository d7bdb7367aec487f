"""Kärger two-pool exchange: limits, detailed balance, matrix exponential, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from sbi_dmri.kernels import exchange

karger = jax.jit(exchange.karger)
karger_pgse = jax.jit(exchange.karger_pgse)


def test_matches_scipy_expm(x64):
    rng = np.random.default_rng(0)
    n = 400
    x1, x2 = rng.uniform(0, 8, n), rng.uniform(0, 8, n)
    x2[:40] = x1[:40]  # coinciding dephasing rates
    x1[40:60] = 0.0
    f1 = rng.uniform(0.01, 0.99, n)
    k12 = rng.uniform(0, 0.3, n)
    k12[60:100] = 0.0  # no exchange
    k12[100:110] = 1e-9
    t = rng.uniform(5, 60, n)
    k21 = f1 * k12 / (1 - f1)
    e = np.asarray(karger(*map(jnp.asarray, (x1, x2, f1, k12, k21, t))))
    for i in range(n):
        m = np.array([[x1[i] + k12[i] * t[i], -k21[i] * t[i]], [-k12[i] * t[i], x2[i] + k21[i] * t[i]]])
        ref = np.ones(2) @ scipy.linalg.expm(-m) @ np.array([f1[i], 1 - f1[i]])
        assert e[i] == pytest.approx(ref, abs=1e-9), i


def test_no_exchange_is_the_two_pool_sum(x64):
    q, t = jnp.linspace(0.0, 0.3, 20), 30.0
    e = karger_pgse(q, t, 2.0, 0.5, 0.3, 0.0, 0.0)
    ref = 0.3 * jnp.exp(-q**2 * 2.0 * t) + 0.7 * jnp.exp(-q**2 * 0.5 * t)
    np.testing.assert_allclose(e, ref, rtol=1e-12, atol=1e-15)


def test_fast_exchange_is_the_averaged_gaussian(x64):
    q, t = jnp.linspace(0.0, 0.3, 20), 30.0
    f1, d1, d2 = 0.3, 2.0, 0.5
    k12, k21 = exchange.rates_from_exchange_time(f1, 1e-6)
    e = karger_pgse(q, t, d1, d2, f1, k12, k21)
    np.testing.assert_allclose(e, jnp.exp(-q**2 * (f1 * d1 + (1 - f1) * d2) * t), rtol=1e-5)


def test_signal_monotone_in_exchange_between_the_limits(x64):
    q, t = jnp.full(1, 0.25), 30.0
    f1, d1, d2 = 0.4, 2.5, 0.3
    slow = karger_pgse(q, t, d1, d2, f1, 0.0, 0.0)[0]
    fast = jnp.exp(-q**2 * (f1 * d1 + (1 - f1) * d2) * t)[0]
    values = [karger_pgse(q, t, d1, d2, f1, *exchange.rates_from_exchange_time(f1, tex))[0] for tex in (300, 30, 3)]
    assert slow > values[0] > values[1] > values[2] > fast


def test_detailed_balance_keeps_fractions_at_q0(x64):
    # At q = 0 the exchange alone must leave the total (and each pool) magnetisation unchanged.
    f1, k12 = 0.35, 0.08
    k21 = f1 * k12 / (1 - f1)
    assert f1 * k12 == pytest.approx((1 - f1) * k21)
    assert float(karger(0.0, 0.0, f1, k12, k21, 50.0)) == pytest.approx(1.0, abs=1e-14)
    # The rate helpers must give balanced pairs (f₁k₁₂ = f₂k₂₁) and k_in→out = κ S/V.
    for kin, kout in [exchange.rates_from_exchange_time(f1, 20.0), exchange.rates_from_permeability(0.01, 2.0, f1)]:
        assert f1 * kin == pytest.approx((1 - f1) * kout)
    kc, _ = exchange.rates_from_permeability(0.01, 2.0, f1, "cylinder")
    ks, _ = exchange.rates_from_permeability(0.01, 2.0, f1, "sphere")
    assert (kc, ks) == (pytest.approx(2 * 0.01 / 2.0), pytest.approx(3 * 0.01 / 2.0))


def test_restricted_pool_uses_its_log_signal(x64):
    # A restricted pool enters through x = −ln E; without exchange the result is f₁E₁ + f₂E₂.
    e1, e2 = jnp.asarray([0.9, 0.6, 0.4]), jnp.asarray([0.8, 0.3, 0.05])
    e = karger(-jnp.log(e1), -jnp.log(e2), 0.6, 0.0, 0.0, 40.0)
    np.testing.assert_allclose(e, 0.6 * e1 + 0.4 * e2, rtol=1e-12)


NAMES = ("permeability", "f_in", "d_1", "d_2")


def _karger_loss(x):
    """Σ E² over four q-values, as a function of (κ µm/ms, f_in, D₁, D₂ µm²/ms); cylinder, R = 3 µm."""
    q, t, radius = jnp.asarray([0.05, 0.1, 0.2, 0.3]), 40.0, 3.0
    permeability, f_in, d_1, d_2 = x[0], x[1], x[2], x[3]
    k_io, k_oi = exchange.rates_from_permeability(permeability, radius, f_in, "cylinder")
    return jnp.sum(exchange.karger_pgse(q, t, d_1, d_2, f_in, k_io, k_oi) ** 2)


def test_gradients_match_finite_differences(x64):
    x0 = jnp.asarray([0.02, 0.45, 1.8, 0.9])
    grad = np.asarray(jax.jit(jax.grad(_karger_loss))(x0))
    loss = jax.jit(_karger_loss)
    h = 1e-6
    for i, name in enumerate(NAMES):
        step = jnp.zeros(4).at[i].set(h)
        fd = (loss(x0 + step) - loss(x0 - step)) / (2 * h)
        assert grad[i] == pytest.approx(float(fd), rel=1e-6), name


def test_gradients_finite_at_degenerate_points():
    # float32, no exchange and coinciding dephasing rates: the closed form's 0/0 points.
    g = jax.jit(jax.grad(lambda k, x: jnp.sum(exchange.karger(x, x, 0.5, k, k, 20.0)), argnums=(0, 1)))
    for k, x in [(0.0, 0.0), (0.0, 1.0), (1e-3, 1.0)]:
        grads = g(jnp.float32(k), jnp.asarray([x], jnp.float32))
        assert all(np.all(np.isfinite(np.asarray(v))) for v in grads)

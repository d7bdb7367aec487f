"""Gaussian kernels: hand values, limits, symmetries, spherical means by quadrature, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri.kernels import gaussian as k


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


B = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
G = _unit(np.random.default_rng(0).normal(size=(5, 3)))
N = _unit([0.3, -0.2, 0.9])


def test_hand_computed_values(x64):
    b, g = np.array([2.0]), np.array([[1.0, 0.0, 0.0]])
    n = _unit([1.0, 1.0, 0.0])  # (ĝ·n)² = 1/2
    assert float(k.ball(b, 3.0)[0]) == pytest.approx(np.exp(-6.0), rel=1e-12)
    assert float(k.stick(b, g, n, 2.0)[0]) == pytest.approx(np.exp(-2.0), rel=1e-12)
    assert float(k.zeppelin(b, g, n, 2.0, 0.5)[0]) == pytest.approx(np.exp(-2.0 * (0.5 + 1.5 * 0.5)), rel=1e-12)
    # Tensor with axis x: ĝ = x sees λ1 only.
    assert float(k.tensor(b, g, np.array([1.0, 0, 0]), 0.3, 1.7, 0.4, 0.2)[0]) == pytest.approx(np.exp(-3.4), rel=1e-12)
    # √π erf(√y)/(2√y) at y = b d = 1: 0.746824132812427.
    assert float(k.stick_spherical_mean(np.array([1.0]), 1.0)[0]) == pytest.approx(0.746824132812427, rel=1e-12)


def _all_kernels(b, g, n):
    return {
        "ball": k.ball(b, 2.0),
        "stick": k.stick(b, g, n, 1.7),
        "zeppelin": k.zeppelin(b, g, n, 1.7, 0.5),
        "tensor": k.tensor(b, g, n, 0.7, 1.7, 0.6, 0.3),
        "stick_sm": k.stick_spherical_mean(b, 1.7),
        "zeppelin_sm": k.zeppelin_spherical_mean(b, 1.7, 0.5),
        "zeppelin_sm_oblate": k.zeppelin_spherical_mean(b, 0.5, 1.7),
    }


def test_b0_gives_one_and_range():
    b0 = _all_kernels(np.zeros(5), G, N)
    for name, e in b0.items():
        np.testing.assert_array_equal(np.asarray(e), 1.0, err_msg=name)
    for name, e in _all_kernels(B, G, N).items():
        assert np.all((np.asarray(e) > 0) & (np.asarray(e) <= 1)), name


def test_antipodal_symmetry(x64):
    plus, minus_g, minus_n = _all_kernels(B, G, N), _all_kernels(B, -G, N), _all_kernels(B, G, -N)
    for name in plus:
        np.testing.assert_allclose(minus_g[name], plus[name], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(minus_n[name], plus[name], rtol=1e-12, err_msg=name)


def test_zeppelin_limits_and_tensor_reduces_to_zeppelin(x64):
    np.testing.assert_allclose(k.zeppelin(B, G, N, 1.7, 0.0), k.stick(B, G, N, 1.7), rtol=1e-14)
    np.testing.assert_allclose(k.zeppelin(B, G, N, 1.1, 1.1), k.ball(B, 1.1), rtol=1e-14)
    for psi in (0.0, 0.4, 2.5):
        np.testing.assert_allclose(k.tensor(B, G, N, psi, 1.7, 0.5, 0.5), k.zeppelin(B, G, N, 1.7, 0.5), rtol=1e-12)


def test_tensor_frame_is_orthonormal_and_axis_invariant(x64):
    for n in (N, _unit([0, 0, 1.0]), _unit([1.0, 0, 0]), _unit([0.2, 0.3, -0.9])):
        F = np.asarray(k.tensor_frame(jnp.asarray(n), 0.9))
        np.testing.assert_allclose(F @ F.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(np.abs(F[0] @ n), 1.0, atol=1e-12)
        np.testing.assert_allclose(k.tensor_frame(jnp.asarray(-n), 0.9)[1:], F[1:], atol=1e-12)


def _sphere_quadrature(n_cos=96, n_phi=96):
    """Gauss–Legendre in cos θ × uniform φ: exact for the smooth integrands here to ~1e-12."""
    x, w = np.polynomial.legendre.leggauss(n_cos)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    c, p = np.meshgrid(x, phi, indexing="ij")
    s = np.sqrt(1 - c**2)
    dirs = np.stack([s * np.cos(p), s * np.sin(p), c], -1).reshape(-1, 3)
    weights = np.repeat(w, n_phi) / n_phi / 2.0  # sums to 1
    return dirs, weights


@pytest.mark.parametrize("b", [0.3, 1.0, 3.0, 10.0])
def test_spherical_means_equal_quadrature(x64, b):
    dirs, w = _sphere_quadrature()
    bb = np.full(len(dirs), b)
    n = _unit([0.5, 0.1, 0.2])  # off the quadrature's pole: a real test of the average
    stick_avg = np.sum(w * np.asarray(k.stick(bb, dirs, n, 1.7)))
    assert float(k.stick_spherical_mean(np.array([b]), 1.7)[0]) == pytest.approx(stick_avg, abs=1e-6)
    for d_par, d_perp in [(1.7, 0.5), (0.5, 1.7)]:
        zep_avg = np.sum(w * np.asarray(k.zeppelin(bb, dirs, n, d_par, d_perp)))
        got = float(k.zeppelin_spherical_mean(np.array([b]), d_par, d_perp)[0])
        assert got == pytest.approx(zep_avg, abs=1e-6), (d_par, d_perp)


def _fd_check(f, x0, eps=1e-6, rtol=1e-6, atol=1e-9):
    x0 = np.asarray(x0, dtype=np.float64)
    f = jax.jit(f)  # one compile per check instead of eager dispatch for every evaluation
    grad = np.asarray(jax.jit(jax.jacfwd(f))(jnp.asarray(x0)))
    num = np.zeros_like(grad)
    for i in np.ndindex(x0.shape):
        dx = np.zeros_like(x0)
        dx[i] = eps
        num[(...,) + i] = (np.asarray(f(jnp.asarray(x0 + dx))) - np.asarray(f(jnp.asarray(x0 - dx)))) / (2 * eps)
    np.testing.assert_allclose(grad, num, rtol=rtol, atol=atol)


@pytest.mark.parametrize("b", [B, np.array([0.0, 1e-9, 1e-5])])
def test_gradients_equal_finite_differences(x64, b):
    g = G[: len(b)]
    _fd_check(lambda d: k.ball(b, d), 1.3)
    _fd_check(lambda d: k.stick(b, g, N, d), 1.3)
    _fd_check(lambda n: k.stick(b, g, n, 1.3), N)
    _fd_check(lambda v: k.zeppelin(b, g, N, v[0], v[1]), [1.7, 0.4])
    _fd_check(lambda n: k.zeppelin(b, g, n, 1.7, 0.4), N)
    _fd_check(lambda v: k.tensor(b, g, N, v[0], v[1], v[2], v[3]), [0.7, 1.7, 0.6, 0.3])
    _fd_check(lambda d: k.stick_spherical_mean(b, d), 1.3)
    _fd_check(lambda v: k.zeppelin_spherical_mean(b, v[0], v[1]), [1.7, 0.4])
    _fd_check(lambda v: k.zeppelin_spherical_mean(b, v[0], v[1]), [0.4, 1.7])


def test_jit_vmap_traces_once():
    traces = []

    @jax.jit
    def batch(d_par, d_perp):
        traces.append(1)
        return jax.vmap(lambda a, c: k.zeppelin(B, G, N, a, c))(d_par, d_perp)

    for seed in range(4):
        x = jax.random.uniform(jax.random.PRNGKey(seed), (2, 64), minval=0.1, maxval=3.0)
        out = batch(x[0], x[1])
    assert len(traces) == 1
    np.testing.assert_allclose(out[3], k.zeppelin(B, G, N, x[0, 3], x[1, 3]), rtol=1e-6)

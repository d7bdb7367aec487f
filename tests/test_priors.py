"""Priors: sampling, densities, and the unconstrained charts (round trip, log-det, normalisation)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri.priors import AxisUniform, Dirichlet, LogUniform, Prior, Uniform

KEY = jax.random.PRNGKey(0)


def _prior():
    return Prior([Uniform("d", 0.1, 3.0), LogUniform("r", 0.5, 10.0), Dirichlet(["f1", "f2"]), AxisUniform("n")])


def test_round_trip_and_support():
    prior = _prior()
    s = prior.sample(KEY, 4000)
    assert float(s["d"].min()) >= 0.1 and float(s["d"].max()) <= 3.0
    assert float(s["r"].min()) >= 0.5 and float(s["r"].max()) <= 10.0
    assert float((1 - s["f1"] - s["f2"]).min()) >= -1e-6
    z = prior.to_unconstrained(s)
    assert z.shape == (4000, 1 + 1 + 2 + 2) == (4000, prior.dim)
    back = prior.from_unconstrained(z)
    for name in ("d", "r", "f1", "f2"):
        np.testing.assert_allclose(back[name], s[name], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.abs(np.sum(back["n"] * s["n"], -1)), 1.0, atol=1e-5)
    assert np.all(np.isfinite(prior.log_prob(s)))
    assert float(prior.log_prob(dict(s, d=s["d"].at[0].set(5.0)))[0]) == -np.inf


def test_axis_chart_is_antipodally_invariant():
    n = AxisUniform("n").sample(KEY, 100)["n"]
    f = AxisUniform("n").to_unconstrained
    np.testing.assert_allclose(f({"n": -n}), f({"n": n}), rtol=1e-6)


def test_uniform_axis_samples_are_isotropic():
    n = np.asarray(AxisUniform("n").sample(KEY, 20000)["n"])
    np.testing.assert_allclose(n.T @ n / len(n), np.eye(3) / 3, atol=0.01)


def test_dirichlet_moments():
    s = Dirichlet(["a", "b"], alpha=[2.0, 3.0, 5.0]).sample(KEY, 20000)
    assert float(s["a"].mean()) == pytest.approx(0.2, abs=0.01)
    assert float(s["b"].mean()) == pytest.approx(0.3, abs=0.01)


def test_log_det_matches_autodiff(x64):
    z = jnp.asarray(np.random.default_rng(0).normal(size=6))
    prior = _prior()
    _, ld = prior.from_unconstrained_and_log_det(z)
    # Scalars and fractions: a square Jacobian. Axis: area scale √det(JᵀJ) of the 3×2 Jacobian.
    sq = lambda zz: jnp.stack([prior.from_unconstrained(zz)[k] for k in ("d", "r", "f1", "f2")])  # noqa: E731
    J = jax.jacfwd(lambda zz: sq(jnp.concatenate([zz, z[4:]])))(z[:4])
    Jn = jax.jacfwd(lambda zz: prior.from_unconstrained(jnp.concatenate([z[:4], zz]))["n"])(z[4:])
    expected = np.log(abs(np.linalg.det(J))) + 0.5 * np.log(np.linalg.det(Jn.T @ Jn))
    assert float(ld) == pytest.approx(expected, rel=1e-9)


def test_unconstrained_density_normalises(x64):
    # 1-D factors: ∫ p(z) dz = 1 by quadrature over a wide grid.
    z = np.linspace(-40, 40, 200001)[:, None]
    for f in (Uniform("x", -1.0, 2.0), LogUniform("x", 0.1, 100.0)):
        params, ld = f.from_unconstrained(jnp.asarray(z))
        total = np.trapezoid(np.exp(np.asarray(f.log_prob(params) + ld)), z[:, 0])
        assert total == pytest.approx(1.0, abs=1e-6)
    # Axis: radial integral ∫ 2πr p(r) dr = 1 − 1/√(1 + R²) for the gnomonic chart.
    r = np.linspace(0, 1000, 400001)
    params, ld = AxisUniform("n").from_unconstrained(jnp.asarray(np.stack([r, 0 * r], -1)))
    dens = np.exp(np.asarray(AxisUniform("n").log_prob(params) + ld))
    assert np.trapezoid(2 * np.pi * r * dens, r) == pytest.approx(1 - 1 / math.sqrt(1 + 1000.0**2), abs=1e-6)


def test_bad_priors_are_refused():
    with pytest.raises(ValueError):
        Uniform("x", 1.0, 1.0)
    with pytest.raises(ValueError):
        LogUniform("x", 0.0, 1.0)
    with pytest.raises(ValueError):
        Dirichlet(["a"], alpha=[1.0, -1.0])
    with pytest.raises(ValueError, match="more than one"):
        Prior([Uniform("x", 0, 1), Uniform("x", 0, 2)])


def test_dirichlet_density_against_scipy_and_buildable_while_tracing():
    from scipy import stats

    d = Dirichlet(["a", "b"], alpha=[2.0, 3.0, 5.0])
    lp = float(d.log_prob({"a": jnp.array(0.2), "b": jnp.array(0.3)}))
    assert lp == pytest.approx(stats.dirichlet.logpdf([0.2, 0.3, 0.5], [2, 3, 5]), rel=1e-5)
    # Models rebuild their prior on access, sometimes inside jit: construction must not need concrete values.
    f = jax.jit(lambda z: Prior([Dirichlet(["a", "b"], alpha=[2.0, 3.0, 5.0])]).log_prob_unconstrained(z))
    assert np.isfinite(float(f(jnp.zeros(2))))

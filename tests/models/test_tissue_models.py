"""The tissue-model zoo: composition equals hand-composed kernels, physical ranges, one trace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.kernels import exchange, gaussian, watson
from sbi_dmri.models.tissue import dti

ZOO = ["noddi", "smt", "sandi", "axcaliber", "axcaliber_gamma", "nexi", "dti"]


def make_acquisition():
    """b = 0 plus three shells (1, 2, 3 ms/µm²) × 8 directions, each shell at two diffusion times."""
    rng = np.random.default_rng(0)
    b = np.concatenate([np.zeros(2), np.repeat([1.0, 2.0, 3.0], 8)])
    g = rng.normal(size=(b.size, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    Delta = np.where(np.arange(b.size) % 2 == 0, 20.0, 45.0)
    return Acquisition.pgse(b, g, delta=8.0, Delta=Delta)


ACQ = make_acquisition()


def sample(name, n=3, seed=0):
    m = models.get(name)
    return m, m.prior.sample(jax.random.PRNGKey(seed), n)


def one(params, i):
    return {k: v[i] for k, v in params.items()}


# ------------------------------------------------------------ hand-composed references
def hand_noddi(acq, p):
    kappa = watson.kappa_from_odi(p["odi"])
    d_par, d_iso = 1.7, 3.0
    d_perp = d_par * (1.0 - p["ndi"])
    tissue = 1.0 - p["f_iso"]
    e_ic = watson.watson_stick(acq.bvalues, acq.directions, p["orientation"], kappa, d_par)
    e_ec = watson.watson_zeppelin(acq.bvalues, acq.directions, p["orientation"], kappa, d_par, d_perp)
    return tissue * p["ndi"] * e_ic + tissue * (1.0 - p["ndi"]) * e_ec + p["f_iso"] * gaussian.ball(acq.bvalues, d_iso)


def hand_smt(acq, p):
    d_perp = p["d_par"] * (1.0 - p["f_intra"])
    return p["f_intra"] * gaussian.stick_spherical_mean(acq.bvalues, p["d_par"]) + (
        1.0 - p["f_intra"]
    ) * gaussian.zeppelin_spherical_mean(acq.bvalues, p["d_par"], d_perp)


def hand_sandi(acq, p):
    from sbi_dmri.kernels import sphere

    f_extra = 1.0 - (p["f_neurite"] + p["f_soma"])
    return (
        p["f_neurite"] * gaussian.stick_spherical_mean(acq.bvalues, p["d_in"])
        + p["f_soma"] * sphere.sphere_gpd(acq.bvalues, acq.delta, acq.Delta, p["r_soma"], 3.0)
        + f_extra * gaussian.ball(acq.bvalues, p["d_e"])
    )


def hand_axcaliber(acq, p, gamma=False):
    from sbi_dmri.kernels import cylinder, distributions

    f_csf = 1.0 - (p["f_restricted"] + p["f_hindered"])
    args = (acq.bvalues, acq.directions, acq.delta, acq.Delta, p["orientation"])
    if gamma:
        e_r = distributions.cylinder_gpd_gamma(*args, p["radius_mean"], p["radius_shape"], p["d_par"])
    else:
        e_r = cylinder.cylinder_gpd(*args, p["radius"], p["d_par"])
    e_h = gaussian.zeppelin(acq.bvalues, acq.directions, p["orientation"], p["d_par"], p["d_perp"])
    return p["f_restricted"] * e_r + p["f_hindered"] * e_h + f_csf * gaussian.ball(acq.bvalues, 3.0)


def hand_nexi(acq, p):
    k_ie, k_ei = exchange.rates_from_exchange_time(p["f"], p["t_ex"])
    return 1.0 * exchange.karger_powder_stick(acq.bvalues, acq.Delta, p["d_i"], p["d_e"], p["f"], k_ie, k_ei)


def hand_dti(acq, p):
    return 1.0 * gaussian.tensor(
        acq.bvalues, acq.directions, p["orientation"], p["psi"], p["lambda_1"], p["lambda_2"], p["lambda_3"]
    )


HAND = {
    "noddi": hand_noddi,
    "smt": hand_smt,
    "sandi": hand_sandi,
    "axcaliber": hand_axcaliber,
    "axcaliber_gamma": lambda acq, p: hand_axcaliber(acq, p, gamma=True),
    "nexi": hand_nexi,
    "dti": hand_dti,
}


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", ZOO)
def test_registered_as_tissue_with_bounded_parameters(name):
    assert name in models.available("tissue")
    m = models.get(name)
    for p in m.parameters:
        if p.kind != "orientation":
            assert np.isfinite(p.lower) and np.isfinite(p.upper) and p.lower < p.upper, p


@pytest.mark.parametrize("name", ZOO)
def test_composition_equals_hand_composed_kernels_bit_for_bit(name):
    # Both jitted (eager dispatch of the quadratures is slow); the same operations in the same
    # order compile to the same arithmetic.
    m, params = sample(name, n=2)
    composed = jax.jit(jax.vmap(m.signal, in_axes=(None, 0)))
    hand = jax.jit(jax.vmap(HAND[name], in_axes=(None, 0)))
    np.testing.assert_array_equal(np.asarray(composed(ACQ, params)), np.asarray(hand(ACQ, params)))


@pytest.mark.parametrize("name", ZOO)
def test_prior_samples_give_physical_signals_and_jit_vmap_traces_once(name):
    m, params = sample(name, n=64, seed=1)
    traces = []

    def batch_signal(p):
        traces.append(1)
        return jax.vmap(m.signal, in_axes=(None, 0))(ACQ, p)

    f = jax.jit(batch_signal)
    e = np.asarray(f(params))
    e2 = np.asarray(f(m.prior.sample(jax.random.PRNGKey(2), 64)))
    assert len(traces) == 1
    assert np.all(np.isfinite(e)) and np.all(np.isfinite(e2))
    # float32: the weights sum to 1 within rounding, so E may exceed 1 by an ulp or two.
    assert e.min() >= 0.0 and e.max() <= 1.0 + 2e-6
    np.testing.assert_allclose(e[:, ACQ.b0_mask], 1.0, atol=2e-6)


def test_noddi_limits(x64):
    """ODI → 0 (κ = 64) approaches the undispersed stick + tortuous zeppelin; f_iso = 1 is the ball."""
    m = models.get("noddi")
    n = jnp.asarray([0.0, 0.6, 0.8])
    p = {"orientation": n, "odi": 1e-4, "ndi": 0.6, "f_iso": 0.1}
    e = m.signal(ACQ, p)
    b, g = ACQ.bvalues, ACQ.directions
    ref = 0.9 * (0.6 * gaussian.stick(b, g, n, 1.7) + 0.4 * gaussian.zeppelin(b, g, n, 1.7, 1.7 * 0.4))
    ref = ref + 0.1 * gaussian.ball(b, 3.0)
    np.testing.assert_allclose(e, ref, atol=2e-3)  # κ = 1/tan(π·1e-4/2) ≈ 6366: O(b d/κ) residual
    np.testing.assert_allclose(m.signal(ACQ, dict(p, f_iso=1.0)), gaussian.ball(b, 3.0), rtol=1e-12)
    # ODI = 1 (κ = 0): the spherical means.
    e_iso = m.signal(ACQ, dict(p, odi=1.0, f_iso=0.0))
    ref_iso = 0.6 * gaussian.stick_spherical_mean(b, 1.7) + 0.4 * gaussian.zeppelin_spherical_mean(b, 1.7, 0.68)
    np.testing.assert_allclose(e_iso, ref_iso, atol=1e-9)


def test_nexi_exchange_limits(x64):
    """Slow exchange: the standard-model powder average; fast: the averaged Gaussian per orientation."""
    m = models.get("nexi")
    p = {"t_ex": 1e9, "d_i": 2.4, "d_e": 0.9, "f": 0.35}
    b = ACQ.bvalues
    ref = 0.35 * gaussian.stick_spherical_mean(b, 2.4) + 0.65 * gaussian.ball(b, 0.9)
    np.testing.assert_allclose(m.signal(ACQ, p), ref, atol=1e-7)
    # Exchange lowers the high-b signal (the paper's signature), more so at the longer Δ.
    with_exchange = np.asarray(m.signal(ACQ, dict(p, t_ex=10.0)))
    drop = np.asarray(ref) - with_exchange
    high_b = ACQ.bvalues == 3.0
    assert np.all(drop[high_b] > 0)
    assert drop[high_b & (ACQ.Delta == 45.0)].min() > drop[high_b & (ACQ.Delta == 20.0)].max()
    # Very fast exchange: every orientation sees the fraction-averaged tensor f d_i ξ² + (1 − f) d_e.
    fast = m.signal(ACQ, dict(p, t_ex=1e-6))
    ref_fast = gaussian.ball(b, 0.65 * 0.9) * gaussian.stick_spherical_mean(b, 0.35 * 2.4)
    np.testing.assert_allclose(fast, ref_fast, rtol=1e-5)


def test_dti_metrics(x64):
    assert float(dti.fractional_anisotropy(1.0, 1.0, 1.0)) == 0.0
    assert float(dti.fractional_anisotropy(1.0, 0.0, 0.0)) == pytest.approx(1.0)
    l1, l2, l3 = 1.7, 0.3, 0.2
    md = (l1 + l2 + l3) / 3
    fa = np.sqrt(1.5 * ((l1 - md) ** 2 + (l2 - md) ** 2 + (l3 - md) ** 2) / (l1**2 + l2**2 + l3**2))
    assert float(dti.mean_diffusivity(l1, l2, l3)) == pytest.approx(md)
    assert float(dti.fractional_anisotropy(l1, l2, l3)) == pytest.approx(fa)
    assert float(dti.axial_diffusivity(l2, l1, l3)) == l1
    assert float(dti.radial_diffusivity(l1, l2, l3)) == pytest.approx(0.25)
    g = jax.grad(lambda x: dti.fractional_anisotropy(x, x, x))(1.0)
    assert np.isfinite(float(g))


@pytest.mark.parametrize("name", ["noddi", "smt", "nexi"])
def test_gradients_wrt_fractions_and_diffusivities_match_finite_differences(x64, name):
    m, params = sample(name, n=1, seed=3)
    p0 = one(params, 0)
    scalars = [k for k in m.parameter_names if m.parameter(k).kind != "orientation"]

    def loss(x):
        p = dict(p0, **{k: x[i] for i, k in enumerate(scalars)})
        return jnp.sum(m.signal(ACQ, p) ** 2)

    x0 = jnp.asarray([p0[k] for k in scalars])
    grad = np.asarray(jax.jit(jax.grad(loss))(x0))
    loss_j = jax.jit(loss)
    h = 1e-6
    for i in range(len(scalars)):
        step = jnp.zeros_like(x0).at[i].set(h)
        fd = (loss_j(x0 + step) - loss_j(x0 - step)) / (2 * h)
        assert grad[i] == pytest.approx(float(fd), rel=1e-5, abs=1e-8), scalars[i]

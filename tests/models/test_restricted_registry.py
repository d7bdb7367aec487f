"""Every registered restricted compartment: E(b=0) = 1, ĝ ≡ −ĝ, n ≡ −n, 0 ≤ E ≤ 1, one trace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.models.restricted import RESTRICTED, WAVEFORM_CAPABLE

RNG = np.random.default_rng(3)
_G = RNG.normal(size=(12, 3))
_G /= np.linalg.norm(_G, axis=1, keepdims=True)
_B = np.array([0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 10.0, 1.0, 3.0, 6.0])
_DELTA = np.array([10.0, 10.0, 1.0, 5.0, 10.0, 20.0, 40.0, 1.0, 40.0, 10.0, 10.0, 10.0])
_BIG = np.array([30.0, 30.0, 100.0, 20.0, 30.0, 50.0, 40.0, 100.0, 100.0, 12.0, 30.0, 60.0])
ACQ = Acquisition.pgse(_B, _G, delta=_DELTA, Delta=_BIG)
ACQ_FLIPPED = Acquisition.pgse(_B, -_G, delta=_DELTA, Delta=_BIG)


def test_all_restricted_compartments_are_registered():
    assert set(RESTRICTED) <= set(models.available("compartment"))
    for name in ("cylinder_soderman", "cylinder_callaghan", "cylinder_gpd", "cylinder_neuman", "sphere_soderman",
                 "sphere_callaghan", "sphere_gpd", "planes_soderman", "planes_gpd", "planes_tanner",
                 "cylinder_gpd_gamma"):
        assert name in RESTRICTED


@pytest.mark.parametrize("name", RESTRICTED)
def test_compartment_properties(name):
    model = models.get(name)
    params = model.prior.sample(jax.random.PRNGKey(0), 6)
    for p in model.parameters:  # the corners of the box: sizes and diffusivity at both bounds
        if p.kind == "scalar":
            params[p.name] = params[p.name].at[:4].set(jnp.array([p.lower, p.upper, p.upper, p.lower]))
    traces = []

    def signal(acq, p):
        traces.append(1)
        return model.signal(acq, p)

    batched = jax.jit(jax.vmap(signal, in_axes=(None, 0)))
    e = np.asarray(batched(ACQ, params))
    e_again = batched(ACQ, jax.tree.map(lambda x: x[::-1], params))  # new values, same shapes
    assert len(traces) == 1 and np.allclose(np.asarray(e_again)[::-1], e, atol=1e-6)
    assert np.all(np.isfinite(e)) and np.all((e >= 0) & (e <= 1 + 1e-6))
    assert np.allclose(e[:, :2], 1.0, atol=1e-6)  # b = 0
    assert np.allclose(batched(ACQ_FLIPPED, params), e, atol=1e-6)  # ĝ ≡ −ĝ
    if "orientation" in params:
        flipped = dict(params, orientation=-params["orientation"])
        assert np.allclose(batched(ACQ, flipped), e, atol=1e-6)  # n ≡ −n


@pytest.mark.parametrize("name", WAVEFORM_CAPABLE)
def test_gpd_compartments_dispatch_to_the_waveform_kernel(name):
    pgse = ACQ.select(np.arange(2, 7))
    wave = Acquisition.from_waveform(pgse.render_waveform(0.5), 0.5)  # δ, Δ on the 0.5 ms grid
    model = models.get(name)
    params = model.prior.sample(jax.random.PRNGKey(1), 3)
    f = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))
    assert np.allclose(f(wave, params), f(pgse, params), atol=2e-5)


def test_short_pulse_compartments_refuse_waveforms():
    wave = Acquisition.from_waveform(ACQ.select(np.arange(2, 4)).render_waveform(0.5), 0.5)
    model = models.get("cylinder_callaghan")
    p = {"orientation": jnp.array([0.0, 0.0, 1.0]), "radius": 2.0, "diffusivity": 1.0}
    with pytest.raises(ValueError, match="free waveform"):
        model.signal(wave, p)

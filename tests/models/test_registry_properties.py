"""Properties every registered model must have (run over the whole registry, so new models are covered).

E(b = 0) = 1; 0 ≤ E ≤ 1; E(ĝ) = E(−ĝ); E(n) = E(−n) for every axis parameter; finite gradients with
respect to every scalar parameter, at b = 0 too; one trace for repeated jitted, vmapped calls.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.protocols import load_protocol

_P = load_protocol("hcp_3shell")
# Two b0s, the HCP shells, and b = 5: enough to exercise every kernel; δ/Δ from the protocol.
ACQ = Acquisition.pgse(
    np.concatenate([[0.0, 0.0], _P.bvalues[6:50], [5.0, 5.0]]),
    np.concatenate([[[1, 0, 0], [0, 0, 1.0]], _P.directions[6:50], [[0.6, 0.8, 0.0], [0, 0.6, 0.8]]]),
    delta=10.6, Delta=43.1,
)
FLIPPED = Acquisition.pgse(ACQ.bvalues, -ACQ.directions, delta=10.6, Delta=43.1)


@pytest.mark.parametrize("name", models.available())
def test_registered_model_properties(name):
    model = models.get(name)
    prior = model.prior
    params = prior.sample(jax.random.PRNGKey(1), 8)
    axes = [p.name for p in model.parameters if p.kind == "orientation"]
    traces = []

    @jax.jit
    def batch(acq, p):
        traces.append(1)
        return jax.vmap(model.signal, in_axes=(None, 0))(acq, p)

    e = np.asarray(batch(ACQ, params))
    assert e.shape == (8, ACQ.n_measurements)
    assert np.all(np.isfinite(e)), "non-finite signal"
    assert np.all(e >= -1e-6) and np.all(e <= 1 + 1e-5), (e.min(), e.max())
    np.testing.assert_allclose(e[:, :2], 1.0, atol=1e-5, err_msg="E(b=0) != 1")
    np.testing.assert_allclose(np.asarray(batch(FLIPPED, params)), e, atol=2e-6, err_msg="E(g) != E(-g)")
    for a in axes:
        flipped = dict(params) | {a: -params[a]}
        np.testing.assert_allclose(np.asarray(batch(ACQ, flipped)), e, atol=2e-6, err_msg=f"E({a}) != E(-{a})")
    assert len(traces) == 1, "recompiled for the same shapes"

    scalars = [p.name for p in model.parameters if p.kind != "orientation"]
    one = {k: v[0] for k, v in params.items()}
    grads = jax.jit(jax.grad(lambda s: jnp.sum(model.signal(ACQ, one | s))))({k: one[k] for k in scalars})
    for k, g in grads.items():
        assert np.isfinite(float(g)), f"non-finite gradient w.r.t. {k}"

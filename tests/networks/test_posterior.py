"""Posterior API in constrained units: ball_stick draws inside the prior, unit axes, ordered quantiles,
summaries consistent with the draws; a 1-D posterior's constrained density integrates to 1."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sbi_dmri import models
from sbi_dmri.networks import AmortizedPosterior, ParameterSpace, Posterior, dti_frame, protocol_features
from sbi_dmri.networks.features import FEATURE_DIM
from sbi_dmri.noise import add_noise

from .conftest import ball_stick_protocol, perturb


def _voxels(model, n):
    acq = ball_stick_protocol()
    params = model.prior.sample(jax.random.PRNGKey(0), n)
    signals = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))(acq, params)
    signals = add_noise(jax.random.PRNGKey(1), signals, 30.0, kind="rician")
    mask = jnp.ones(signals.shape, bool)
    return acq, {"signals": signals, "mask": mask, "protocol": protocol_features(acq),
                 "frame": jax.jit(dti_frame)(signals, mask, acq.bvalues, acq.directions)}


def test_ball_stick_posterior_api_in_constrained_units():
    model = models.get("ball_stick")
    space = ParameterSpace(model)
    _, batch = _voxels(model, 4)
    net = AmortizedPosterior(parameter_dim=space.dim, feature_dim=FEATURE_DIM, encoder="set", hidden=16,
                             flow_layers=2, frame_input=True, rngs=nnx.Rngs(0))
    perturb(net.flow, jax.random.PRNGKey(2), scale=0.2)  # an untrained but non-trivial posterior
    post = Posterior(net, batch, space, n_samples=500)
    draws = post.draws
    for name, (lo, hi) in ((p.name, p.bounds) for p in model.parameters if p.kind != "orientation"):
        assert draws[name].shape == (4, 500)
        assert float(draws[name].min()) >= lo and float(draws[name].max()) <= hi, name
    np.testing.assert_allclose(jnp.linalg.norm(draws["orientation"], axis=-1), 1.0, atol=1e-5)
    q = post.quantile([0.1, 0.5, 0.9])
    for name in ("d_par", "d_iso", "f_stick"):
        assert np.all(np.diff(np.asarray(q[name]), axis=-1) >= 0)
        np.testing.assert_allclose(q[name][:, 1], jnp.median(draws[name], axis=1), rtol=1e-5)
        np.testing.assert_allclose(post.mean()[name], jnp.mean(draws[name], axis=1), rtol=1e-5)
    assert np.all(np.diff(np.asarray(q["orientation"]), axis=-1) >= 0)
    m = post.mean()["orientation"]
    np.testing.assert_allclose(jnp.linalg.norm(m, axis=-1), 1.0, atol=1e-5)
    sd = np.asarray(post.std()["orientation"])
    assert np.all((sd > 0) & (sd <= 90))
    # the axial mean is the axis closest to all draws: no draw set is better summarised by a random axis
    cos_m = jnp.mean(jnp.abs(jnp.einsum("bni,bi->bn", draws["orientation"], m)) ** 2, 1)
    cos_z = jnp.mean(jnp.abs(draws["orientation"][..., 2]) ** 2, 1)
    assert np.all(np.asarray(cos_m) >= np.asarray(cos_z) - 1e-6)
    # log_prob is finite at the draws and is the flow density with the change of variables
    lp = post.log_prob(draws)
    assert lp.shape == (4, 500) and bool(jnp.all(jnp.isfinite(lp)))
    point = post.point()
    assert np.all(np.diff(np.asarray(point["quantiles"]["d_par"]), axis=-1) > 0)
    assert float(point["estimate"]["d_par"].min()) >= 0.1 and float(point["estimate"]["d_par"].max()) <= 3.0


def test_one_dimensional_posterior_density_integrates_to_one():
    """ball (d_iso only): ∫ p(d_iso | x) d d_iso = 1 over the prior's support [0.1, 3.5] µm²/ms, which
    checks the θ → constrained change of variables of `Posterior.log_prob`."""
    model = models.get("ball")
    space = ParameterSpace(model)
    _, batch = _voxels(model, 3)
    net = AmortizedPosterior(parameter_dim=1, feature_dim=FEATURE_DIM, encoder="set", hidden=16, flow_layers=2,
                             rngs=nnx.Rngs(1))
    perturb(net.flow, jax.random.PRNGKey(3), scale=0.2)
    post = Posterior(net, batch, space)
    grid = jnp.linspace(0.1, 3.5, 20001)
    density = jnp.exp(post.log_prob({"d_iso": jnp.broadcast_to(grid, (3, grid.size))}))
    np.testing.assert_allclose(jax.vmap(lambda y: jnp.trapezoid(y, grid))(density), 1.0, atol=2e-3)

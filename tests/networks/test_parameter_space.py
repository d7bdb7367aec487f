"""ParameterSpace: round trips, log-det against autodiff, the canonical frame, and dti_frame."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.networks.parameter_space import ParameterSpace, _completion, axis_to_chart, chart_to_axis, dti_frame
from sbi_dmri.priors import AxisUniform, Prior

from .conftest import ball_stick_protocol


def _random_rotations(key, n):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, 3, 3)))
    q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    return q * jnp.where(jnp.linalg.det(q) < 0, -1.0, 1.0)[:, None, None]


@pytest.mark.parametrize("name", ["ball_stick", "zeppelin", "ball"])
def test_round_trip_params_theta_params(name, x64):
    space = ParameterSpace(models.get(name))
    params = space.prior.sample(jax.random.PRNGKey(0), 64)
    frame = _random_rotations(jax.random.PRNGKey(1), 64) if space.has_orientation else None

    @jax.jit
    def there_and_back(params, frame):
        theta = space.to_theta(params, frame)
        back = space.from_theta(theta, frame)
        return theta, back, space.to_theta(back, frame)

    theta, back, theta2 = there_and_back(params, frame)
    for k, v in params.items():
        if k in space.axis_names:
            np.testing.assert_allclose(jnp.abs(jnp.sum(back[k] * v, -1)), 1.0, atol=1e-9)  # same axis up to sign
            np.testing.assert_allclose(jnp.linalg.norm(back[k], axis=-1), 1.0, atol=1e-12)
        else:
            np.testing.assert_allclose(back[k], v, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(theta2, theta, atol=1e-7)


def test_model_without_orientation_ignores_frame():
    space = ParameterSpace(models.get("ball"))
    assert not space.has_orientation and space.dim == 1
    p = space.prior.sample(jax.random.PRNGKey(0), 8)
    np.testing.assert_array_equal(space.to_theta(p), space.to_theta(p, _random_rotations(jax.random.PRNGKey(1), 8)))


def test_log_det_against_autodiff(x64):
    """log|∂constrained/∂θ| = ½ log det(JᵀJ), J the Jacobian of [axis (3), scalars, fraction] w.r.t. θ:
    the volume element of the embedded chart (area on the sphere, Lebesgue on the rest)."""
    space = ParameterSpace(models.get("ball_stick"))
    theta = 1.3 * jax.random.normal(jax.random.PRNGKey(2), (16, space.dim))
    frames = _random_rotations(jax.random.PRNGKey(3), 16)

    def flat(t, f):
        p = space.from_theta(t, f)
        return jnp.concatenate([p["orientation"], jnp.stack([p["d_par"], p["d_iso"], p["f_stick"]])])

    @jax.jit
    def both(theta, frames):
        J = jax.vmap(jax.jacfwd(flat))(theta, frames)  # (16, 6, D)
        return space.log_det(theta, frames), 0.5 * jnp.linalg.slogdet(jnp.einsum("bij,bik->bjk", J, J))[1]

    np.testing.assert_allclose(*both(theta, frames), atol=1e-8)


def test_uniform_axis_maps_to_standard_normal(x64):
    """The compressed gnomonic chart carries the uniform axis density 1/(2π) to N(0, I₂) exactly."""
    w = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (100, 2))
    n, logdet = chart_to_axis(w)
    np.testing.assert_allclose(-math.log(2 * math.pi) + logdet, -math.log(2 * math.pi) - 0.5 * jnp.sum(w**2, -1))
    np.testing.assert_allclose(axis_to_chart(-n), w, atol=1e-9)  # n and −n: one image
    # equator: 0.1° from it the chart is still at a moderate radius (gnomonic alone: tan(89.9°) = 573)
    near_equator = jnp.array([jnp.cos(jnp.radians(0.1)), 0.0, jnp.sin(jnp.radians(0.1))])
    assert 3.0 < float(jnp.linalg.norm(axis_to_chart(near_equator))) < 4.0
    space = ParameterSpace(models.get("stick"))
    th = jax.jit(lambda k: space.to_theta(space.prior.sample(k, 200_000)))(jax.random.PRNGKey(1))
    th = np.asarray(th)[:, space.prior.slices[0]]
    np.testing.assert_allclose(th.mean(0), 0.0, atol=0.01)
    np.testing.assert_allclose(np.cov(th.T), np.eye(2), atol=0.015)


def test_frame_puts_true_axis_at_chart_origin(x64):
    space = ParameterSpace(models.get("ball_stick"))
    axis_dims = space.prior.slices[0]
    tilt = jnp.radians(10.0)

    @jax.jit
    def charts(key):
        params = space.prior.sample(key, 32)
        at_origin = space.to_theta(params, _completion(params["orientation"]))[:, axis_dims]
        # a 10° error of the DTI axis puts the true axis at compressed radius √log(1 + tan²10°)
        frame_tilted = _completion(jnp.array([[jnp.sin(tilt), 0.0, jnp.cos(tilt)]]))
        one = jax.tree.map(lambda v: v[:1], params) | {"orientation": jnp.array([[0.0, 0.0, 1.0]])}
        return at_origin, space.to_theta(one, frame_tilted)[0, axis_dims]

    at_origin, tilted = charts(jax.random.PRNGKey(4))
    np.testing.assert_allclose(at_origin, 0.0, atol=1e-9)
    r = float(jnp.linalg.norm(tilted))
    assert abs(r - math.sqrt(math.log1p(math.tan(tilt) ** 2))) < 1e-9


def test_dti_frame_recovers_principal_axis_of_tensor_signal():
    acq = ball_stick_protocol()
    b, g = jnp.asarray(acq.bvalues, jnp.float32), jnp.asarray(acq.directions, jnp.float32)
    R = _random_rotations(jax.random.PRNGKey(5), 20)
    evals = jnp.array([1.7, 0.4, 0.3])
    D = jnp.einsum("bji,j,bjk->bik", R, evals, R)  # principal eigenvector: R[b, 0]
    signals = jnp.exp(-b[None, :] * jnp.einsum("mi,bij,mj->bm", g, D, g))
    mask = jnp.ones(signals.shape, bool)
    frame = jax.jit(dti_frame)(signals, mask, b, g)
    np.testing.assert_allclose(jnp.abs(jnp.sum(frame[:, 2] * R[:, 0], -1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(jnp.einsum("bij,bkj->bik", frame, frame), jnp.broadcast_to(jnp.eye(3), (20, 3, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.det(frame), 1.0, atol=1e-5)
    # masked measurements are ignored exactly: corrupt half of them
    corrupt = mask.at[:, 40:].set(False)
    frame2 = jax.jit(dti_frame)(signals.at[:, 40:].set(7.0), corrupt, b, g)
    np.testing.assert_allclose(jnp.abs(jnp.sum(frame2[:, 2] * R[:, 0], -1)), 1.0, atol=1e-4)


def test_dti_frame_finds_stick_axis_of_ball_stick():
    """Noise-free ball+stick signal: the tensor fit is symmetric about the stick, so e₁ = stick axis."""
    acq = ball_stick_protocol()
    model = models.get("ball_stick")
    params = model.prior.sample(jax.random.PRNGKey(6), 20)
    params["f_stick"] = 0.3 + 0.5 * params["f_stick"]
    signals = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))(acq, params)
    frame = jax.jit(dti_frame)(signals, jnp.ones(signals.shape, bool), acq.bvalues, acq.directions)
    cos = jnp.abs(jnp.sum(frame[:, 2] * params["orientation"], -1))
    assert float(jnp.min(cos)) > 0.995  # < 6°: the 60-direction sampling is not exactly symmetric


def test_analytic_stats_match_prior_draws():
    model = models.get("ball_stick")
    space = ParameterSpace(model)
    fitted = ParameterSpace(model).fit_stats(jax.random.PRNGKey(3), 200_000).stats
    np.testing.assert_allclose(space.stats["mean"], fitted["mean"], atol=0.02)
    np.testing.assert_allclose(space.stats["std"], fitted["std"], rtol=0.01)

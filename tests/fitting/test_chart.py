"""Per-voxel axis charts: the prior's chart at the pole, inverse, and the area element."""

import jax
import jax.numpy as jnp
import numpy as np

from sbi_dmri import models
from sbi_dmri.fitting import chart

from .helpers import random_axes


def test_pole_centre_is_the_prior_chart_and_inverse_holds_anywhere(x64):
    prior = models.get("ball_stick").prior
    z = jax.random.normal(jax.random.key(0), (50, prior.dim))
    pole = {"orientation": jnp.zeros((50, 3)).at[:, 2].set(1.0)}
    fwd = jax.jit(lambda z, c: chart.from_unconstrained(prior, z, c))
    p_local, ld_local = fwd(z, pole)
    p_prior, ld_prior = jax.jit(prior.from_unconstrained_and_log_det)(z)
    for k in p_prior:
        np.testing.assert_allclose(p_local[k], p_prior[k], atol=1e-14)
    np.testing.assert_allclose(ld_local, ld_prior, atol=1e-12)
    # Any centre, including equatorial ones: z → params → z is the identity.
    centres = {"orientation": jnp.asarray(random_axes(np.random.default_rng(1), 50)).at[:5, 2].set(0.0)}
    centres["orientation"] = centres["orientation"] / jnp.linalg.norm(centres["orientation"], axis=1, keepdims=True)
    back = jax.jit(lambda z, c: chart.to_unconstrained(prior, fwd(z, c)[0], c))(z, centres)
    np.testing.assert_allclose(back, z, atol=1e-10)
    # The chart's origin is the centre itself.
    n0 = fwd(jnp.zeros((50, prior.dim)), centres)[0]["orientation"]
    np.testing.assert_allclose(n0, centres["orientation"], atol=1e-14)


def test_axis_log_det_is_the_area_element(x64):
    """|∂n/∂z₁ × ∂n/∂z₂| (autodiff) equals exp(log-det) for an arbitrary centre."""
    prior = models.get("stick").prior
    c = jnp.asarray(random_axes(np.random.default_rng(2), 1)[0])
    centres = {"orientation": c}
    sl = prior.slices[prior.names.index("orientation")]

    @jax.jit
    @jax.vmap
    def area_and_ratio(z):
        def n_of(za):
            return chart.from_unconstrained(prior, z.at[sl].set(za), centres)[0]["orientation"]

        J = jax.jacfwd(n_of)(z[sl])
        area = jnp.linalg.norm(jnp.cross(J[:, 0], J[:, 1]))
        _, ld = chart.from_unconstrained(prior, z, centres)
        other = prior.from_unconstrained_and_log_det(z)[1] + 1.5 * jnp.log1p(jnp.sum(z[sl] ** 2))
        return area, jnp.exp(ld - other)

    area, jac = area_and_ratio(jax.random.normal(jax.random.key(3), (10, prior.dim)) * 2)
    np.testing.assert_allclose(jac, area, rtol=1e-10)

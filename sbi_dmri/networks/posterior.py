"""Posterior: a trained `AmortizedPosterior` applied to a batch of voxels, in constrained units.

    post = Posterior(network, batch, space)
    post.sample(key, n)   {name: (B, n) scalars | (B, n, 3) unit axes (n_z ≥ 0)}
    post.log_prob(params) log density in constrained units (Lebesgue on scalars and fractions, area
                          on the hemisphere for axes), params (B, ...) or (B, n, ...)
    post.mean(), post.std(), post.quantile(q)
                          Monte Carlo over `n_samples` cached draws (fixed `key`, so repeatable)
    post.point()          the point head: one forward pass, no sampling (the fastest path)

Axes have no scalar mean or quantile: `mean()` is the principal eigenvector of the draws' scatter
matrix Σ n nᵀ (the standard axial mean, invariant to each draw's sign), `std()` the root mean square
angle between draws and that axis, in degrees, and `quantile(q)` the q-quantile of that angle
(degrees): a cone that holds a fraction q of the posterior mass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..priors import LogUniform, Uniform
from .amortized import AmortizedPosterior, apply_fns
from .parameter_space import ParameterSpace, identity_frames


class _Compiled:
    """Jitted constrained-unit entry points for one (graphdef, space) pair, shared by all Posteriors."""

    def __init__(self, graphdef, space: ParameterSpace):
        self.fns = apply_fns(graphdef)

        def sample(state, context, frame, key, n):
            net = nnx.merge(graphdef, state)
            return space.from_theta(net.sample(context, key, n), frame[:, None])

        def log_prob(state, context, frame, params, per_draw):
            f = frame[:, None] if per_draw else frame
            theta = space.to_theta(params, f)
            return nnx.merge(graphdef, state).log_prob(context, theta) - space.log_det(theta, f)

        def point(state, context, frame):
            pt = nnx.merge(graphdef, state).point(context)
            return space.from_theta(pt["mean"], frame), space.from_theta(pt["quantiles"], frame[:, None])

        self.sample = jax.jit(sample, static_argnames="n")
        self.log_prob = jax.jit(log_prob, static_argnames="per_draw")
        self.point = jax.jit(point)


@functools.lru_cache(maxsize=16)
def _compiled(graphdef, space):
    return _Compiled(graphdef, space)


@functools.partial(jax.jit, static_argnames="axis_names")
def _summaries(draws, q, axis_names: tuple[str, ...]):
    """mean, std, quantiles over axis 1 of every entry (axes: axial mean, angles in degrees)."""
    mean, std, quant = {}, {}, {}
    for k, v in draws.items():
        if k in axis_names:
            m = axial_mean(v)
            ang = angles_deg(v, m)
            mean[k], std[k] = m, jnp.sqrt(jnp.mean(ang**2, axis=-1))
            quant[k] = jnp.moveaxis(jnp.quantile(ang, q, axis=1), 0, -1)
        else:
            mean[k], std[k] = jnp.mean(v, axis=1), jnp.std(v, axis=1)
            quant[k] = jnp.moveaxis(jnp.quantile(v, q, axis=1), 0, -1)
    return mean, std, quant


def axial_mean(axes: jax.Array) -> jax.Array:
    """(..., n, 3) axes → (..., 3) principal eigenvector of the scatter matrix, z ≥ 0."""
    scatter = jnp.einsum("...ni,...nj->...ij", axes, axes)
    _, vecs = jnp.linalg.eigh(scatter)
    m = vecs[..., :, 2]
    return jnp.where(m[..., 2:3] < 0, -m, m)


def angles_deg(axes: jax.Array, reference: jax.Array) -> jax.Array:
    """Angle between axes (..., n, 3) and reference axes (..., 3), in [0°, 90°]."""
    cos = jnp.abs(jnp.einsum("...ni,...i->...n", axes, reference))
    return jnp.degrees(jnp.arccos(jnp.clip(cos, 0.0, 1.0)))


class Posterior:
    """Amortized posterior for the voxels of `batch` (see module docstring).

    Args:
        network: a trained AmortizedPosterior. batch: signals, mask, protocol, frame (no theta needed).
        space: the ParameterSpace the network was trained in.
        n_samples, key: the draws behind mean/std/quantile.
    """

    def __init__(self, network: AmortizedPosterior, batch: Mapping[str, jax.Array], space: ParameterSpace, *,
                 n_samples: int = 1000, key: jax.Array | None = None):
        graphdef, self._state = nnx.split(network)
        self._c = _compiled(graphdef, space)
        self.space = space
        self.levels = network.quantile_levels
        self.batch_size = batch["signals"].shape[0]
        frame = batch.get("frame")
        self.frame = identity_frames(self.batch_size) if frame is None else jnp.asarray(frame, jnp.float32)
        self.context = self._c.fns.context(self._state, dict(batch))
        self.n_samples = int(n_samples)
        self.key = jax.random.PRNGKey(0) if key is None else key
        self._draws = None
        self._axis_flags = {k: k in space.axis_names for k in space.names}

    # ------------------------------------------------------------------ sampling and density
    def sample_theta(self, key, n: int) -> jax.Array:
        """(B, n, D) draws in θ space."""
        return self._c.fns.sample(self._state, self.context, key, n=n)

    def sample(self, key, n: int) -> dict[str, jax.Array]:
        """n draws per voxel in constrained units: (B, n) scalars, (B, n, 3) axes."""
        return self._c.sample(self._state, self.context, self.frame, key, n=n)

    def log_prob(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """log p(params | x) in constrained units; params (B, ...) → (B,), or (B, n, ...) → (B, n)."""
        ref = self.space.names[0]
        ndim = jnp.ndim(params[ref]) - (1 if self._axis_flags[ref] else 0)
        return self._c.log_prob(self._state, self.context, self.frame, dict(params), per_draw=ndim == 2)

    @property
    def draws(self) -> dict[str, jax.Array]:
        """The cached `n_samples` draws (key `self.key`) behind mean/std/quantile."""
        if self._draws is None:
            self._draws = self.sample(self.key, self.n_samples)
        return self._draws

    # ------------------------------------------------------------------ summaries
    def _summaries(self, q):
        return _summaries(self.draws, jnp.atleast_1d(jnp.asarray(q, jnp.float32)), self.space.axis_names)

    def mean(self) -> dict[str, jax.Array]:
        """Posterior mean (B,) per scalar; axial mean (B, 3) per axis."""
        return self._summaries(0.5)[0]

    def std(self) -> dict[str, jax.Array]:
        """Posterior standard deviation (B,) per scalar; RMS angle to the axial mean in degrees per axis."""
        return self._summaries(0.5)[1]

    def quantile(self, q) -> dict[str, jax.Array]:
        """q-quantiles: (B,) for scalar q, (B, len(q)) for a sequence; axes: quantile of the angle (degrees)."""
        out = self._summaries(q)[2]
        return {k: v[:, 0] for k, v in out.items()} if np.ndim(q) == 0 else out

    def point(self) -> dict[str, object]:
        """The point head, mapped to constrained units.

        "estimate": the θ-space posterior mean mapped through the charts (for a box parameter this is
        the posterior mean of its logit, mapped back: close to the median); "quantiles": {name: (B, Q)}
        for box (Uniform/LogUniform) parameters, whose charts are monotone per dimension so quantiles map
        exactly; "levels": the quantile levels.
        """
        estimate, qparams = self._c.point(self._state, self.context, self.frame)
        box = [f.names[0] for f in self.space.prior.factors if isinstance(f, (Uniform, LogUniform))]
        return {"estimate": estimate, "quantiles": {k: qparams[k] for k in box}, "levels": self.levels}

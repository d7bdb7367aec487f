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
from flax import nnx

from ..priors import LogUniform, Uniform
from .amortized import AmortizedPosterior, apply_fns
from .parameter_space import ParameterSpace, identity_frames


@functools.lru_cache(maxsize=16)
def _cached_fns(graphdef):
    return apply_fns(graphdef)


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
        self._fns = _cached_fns(graphdef)
        self.space = space
        self.levels = network.quantile_levels
        self.batch_size = batch["signals"].shape[0]
        frame = batch.get("frame")
        self.frame = identity_frames(self.batch_size) if frame is None else jnp.asarray(frame, jnp.float32)
        self.context = self._fns.context(self._state, dict(batch))
        self.n_samples = int(n_samples)
        self.key = jax.random.PRNGKey(0) if key is None else key
        self._draws = None

    # ------------------------------------------------------------------ sampling and density
    def sample_theta(self, key, n: int) -> jax.Array:
        return self._fns.sample(self._state, self.context, key, n)

    def sample(self, key, n: int) -> dict[str, jax.Array]:
        """n draws per voxel in constrained units."""
        return self.space.from_theta(self.sample_theta(key, n), self.frame[:, None])

    def log_prob(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """log p(params | x) in constrained units; params (B, ...) → (B,), or (B, n, ...) → (B, n)."""
        ref = self.space.names[0]
        ndim = params[ref].ndim - (1 if ref in self.space.axis_names else 0)
        frame = self.frame if ndim == 1 else self.frame[:, None]
        theta = self.space.to_theta(params, frame)
        return self._fns.log_prob(self._state, self.context, theta) - self.space.log_det(theta, frame)

    @property
    def draws(self) -> dict[str, jax.Array]:
        if self._draws is None:
            self._draws = self.sample(self.key, self.n_samples)
        return self._draws

    # ------------------------------------------------------------------ summaries
    def mean(self) -> dict[str, jax.Array]:
        """Posterior mean (B,) per scalar; axial mean (B, 3) per axis."""
        return {k: axial_mean(v) if k in self.space.axis_names else jnp.mean(v, axis=1) for k, v in self.draws.items()}

    def std(self) -> dict[str, jax.Array]:
        """Posterior standard deviation (B,) per scalar; RMS angle to the axial mean in degrees per axis."""
        out = {}
        for k, v in self.draws.items():
            if k in self.space.axis_names:
                out[k] = jnp.sqrt(jnp.mean(angles_deg(v, axial_mean(v)) ** 2, axis=-1))
            else:
                out[k] = jnp.std(v, axis=1)
        return out

    def quantile(self, q) -> dict[str, jax.Array]:
        """q-quantiles: (B,) for scalar q, (B, len(q)) for a sequence; axes: quantile of the angle (degrees)."""
        q = jnp.asarray(q, jnp.float32)
        out = {}
        for k, v in self.draws.items():
            x = angles_deg(v, axial_mean(v)) if k in self.space.axis_names else v
            out[k] = jnp.moveaxis(jnp.quantile(x, q, axis=1), 0, -1) if q.ndim else jnp.quantile(x, q, axis=1)
        return out

    def point(self) -> dict[str, object]:
        """The point head, mapped to constrained units.

        "estimate": the θ-space posterior mean mapped through the charts (for a box parameter this is
        the posterior mean of its logit, mapped back: close to the median); "quantiles": {name: (B, Q)}
        for box (Uniform/LogUniform) parameters, whose charts are monotone per dimension so quantiles map
        exactly; "levels": the quantile levels.
        """
        pt = self._fns.point(self._state, self.context)
        estimate = self.space.from_theta(pt["mean"], self.frame)
        qparams = self.space.from_theta(pt["quantiles"], self.frame[:, None])
        box = [f.names[0] for f in self.space.prior.factors if isinstance(f, (Uniform, LogUniform))]
        return {"estimate": estimate, "quantiles": {k: qparams[k] for k in box}, "levels": self.levels}

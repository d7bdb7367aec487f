"""Per-voxel unconstrained charts: the prior's bijection, with each axis charted about its own centre.

The prior (`sbi_dmri.priors`) charts an axis n gnomonically about the pole ẑ, z = (n_x, n_y)/n_z.
That chart is singular on the equator n_z = 0: an axis lying in the x–y plane (the corpus callosum
in most scans) sits at |z| → ∞, where the loss is flat in |z| and an optimiser or sampler stalls.
Here each axis is charted gnomonically about a per-voxel centre c instead (the DTI principal
eigenvector, or a previous estimate):

    n ∝ c + z₁ u + z₂ v,        (u, v, c) a right-handed orthonormal frame,

which is the prior's chart after rotating the frame so that c becomes the pole — but the rotation
is applied to the chart, not to the acquisition, so it is valid for any model (no assumption that
the signal depends on ĝ·n alone). The true axis is then near z = 0, far from the chart's equator.
The uniform axis density is rotation invariant, so the log-Jacobian is the prior's,
−(3/2) log(1 + |z|²); with c = ẑ this chart is exactly `prior.from_unconstrained`.

Every other factor (boxes, log-boxes, the fraction simplex) uses the prior's own chart.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from ..priors import AxisUniform, Prior

Params = dict[str, jax.Array]


def orthonormal_frame(c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two unit vectors u, v with (u, v, c) right-handed orthonormal, for unit c (..., 3).

    Branch-free construction of Duff et al., "Building an orthonormal basis, revisited", JCGT 6(1),
    2017; continuous except where c_z changes sign. For c = ẑ it gives u = x̂, v = ŷ.
    """
    x, y, z = c[..., 0], c[..., 1], c[..., 2]
    sign = jnp.where(z >= 0, 1.0, -1.0).astype(c.dtype)
    a = -1.0 / (sign + z)
    b = x * y * a
    u = jnp.stack([1.0 + sign * x * x * a, sign * b, -sign * x], axis=-1)
    v = jnp.stack([b, sign + y * y * a, -y], axis=-1)
    return u, v


def axis_names(prior: Prior) -> tuple[str, ...]:
    """Names of the prior's axis (orientation) parameters, in chart order."""
    return tuple(f.names[0] for f in prior.factors if isinstance(f, AxisUniform))


def from_unconstrained(prior: Prior, z: jax.Array, centres: Mapping[str, jax.Array]) -> tuple[Params, jax.Array]:
    """z (..., dim) → (constrained params, log|∂params/∂z| (...,)); axes about `centres[name]` (..., 3)."""
    out: Params = {}
    total = 0.0
    for f, s in zip(prior.factors, prior.slices):
        zs = z[..., s]
        if isinstance(f, AxisUniform):
            c = centres[f.names[0]]
            u, v = orthonormal_frame(c)
            w = c + zs[..., 0:1] * u + zs[..., 1:2] * v
            r2 = jnp.sum(zs**2, axis=-1)
            out[f.names[0]] = w / jnp.sqrt(1.0 + r2)[..., None]
            total = total - 1.5 * jnp.log1p(r2)
        else:
            p, ld = f.from_unconstrained(zs)
            out.update(p)
            total = total + ld
    return out, total


def to_unconstrained(prior: Prior, params: Mapping[str, jax.Array], centres: Mapping[str, jax.Array]) -> jax.Array:
    """Inverse of `from_unconstrained`: params → z (..., dim). Axes are taken on c's hemisphere (n ≡ −n)."""
    parts = []
    for f in prior.factors:
        if isinstance(f, AxisUniform):
            n, c = params[f.names[0]], centres[f.names[0]]
            u, v = orthonormal_frame(c)
            nc = jnp.sum(n * c, axis=-1)
            # n and −n are one axis: its coordinates (n·u, n·v)/(n·c) do not depend on the sign.
            # Keep n·c off 0 so an axis at 90° from the centre maps far, not to inf.
            nc = jnp.where(jnp.abs(nc) < 1e-6, jnp.where(nc < 0, -1e-6, 1e-6), nc)
            parts.append(jnp.stack([jnp.sum(n * u, axis=-1), jnp.sum(n * v, axis=-1)], axis=-1) / nc[..., None])
        else:
            parts.append(f.to_unconstrained(params))
    return jnp.concatenate(parts, axis=-1)


def log_prob(prior: Prior, z: jax.Array, centres: Mapping[str, jax.Array]) -> jax.Array:
    """log density of the prior's image in this chart (equals `prior.log_prob_unconstrained` for c = ẑ)."""
    params, ld = from_unconstrained(prior, z, centres)
    return prior.log_prob(params) + ld


def canonical_axis(n: jax.Array) -> jax.Array:
    """The representative of the axis n ≡ −n with n_z ≥ 0 (the prior's convention), (..., 3)."""
    return jnp.where(n[..., 2:3] < 0, -n, n)

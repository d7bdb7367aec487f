"""Conditional normalizing flow q(θ | c) over the standardized unconstrained parameters θ ∈ R^D.

    θ ──[conditional loc-scale]──► ──[coupling 1]──► … ──[coupling L]──► u ~ N(0, I)

log q(θ | c) = log N(u; 0, I) + Σ log |det ∂layer|, exact; sampling runs the layers backwards, also
exact (every layer has a closed-form inverse). Layers:

- `ConditionalLocScale`: θ ↦ (θ − μ(c)) e^{−s(c)}, all dims at once from the context only. It carries
  most of what a posterior is (its location and width), so short trainings already get those right.
- `Coupling`: the dims with mask = 1 are transformed elementwise by a bijection whose parameters are
  an MLP of (the other dims, c) (it outputs parameters for the transformed dims only, and its context
  term is computed once per voxel when several draws share a context: `mlp.ConditionedMLP`) (Dinh et al. 2017): the rational-quadratic spline (`flow="spline"`,
  Durkan et al. 2019) or affine (`flow="affine"`). Masks alternate between the two halves of the
  dims (interleaved, then contiguous) so every dim is transformed given every other. For D = 1 the
  single dim is transformed given c only: a conditional monotone spline.

Every conditioner's last layer is zero-initialised, so the flow starts as the identity (q = N(0, I)
in θ, the standardized prior scale).
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .bijections import affine, rational_quadratic
from .mlp import MLP, ConditionedMLP

FlowKind = Literal["spline", "affine"]


def coupling_masks(dim: int, n_layers: int) -> list[np.ndarray]:
    """Boolean masks (dims transformed in each layer): interleaved and contiguous halves, alternating."""
    if dim == 1:
        return [np.ones(1, bool)] * n_layers
    idx = np.arange(dim)
    patterns = [idx % 2 == 0, idx % 2 == 1, idx < dim // 2, idx >= dim // 2]
    return [patterns[k % 4] for k in range(n_layers)]


class ConditionalLocScale(nnx.Module):
    """θ ↦ (θ − μ(c)) e^{−s(c)} with μ, s from an MLP of the context."""

    def __init__(self, dim: int, context_dim: int, hidden: int, depth: int, *, rngs: nnx.Rngs):
        self.net = MLP(context_dim, hidden, 2 * dim, depth, rngs=rngs, zero_last=True)
        self.dim = dim

    def _params(self, context):
        out = self.net(context)
        shift, s_raw = out[..., : self.dim], out[..., self.dim :]
        return shift, affine.S_MAX * jnp.tanh(s_raw / affine.S_MAX)

    def forward(self, x, context):
        shift, s = self._params(context)
        return (x - shift) * jnp.exp(-s), -jnp.sum(s, axis=-1)

    def inverse(self, u, context):
        shift, s = self._params(context)
        return u * jnp.exp(s) + shift, jnp.sum(s, axis=-1)


class Coupling(nnx.Module):
    """Coupling layer: dims with mask = 1 go through `kind` with parameters from MLP([x·(1−mask), c])."""

    def __init__(
        self, dim: int, context_dim: int, mask: np.ndarray, *, kind: FlowKind, hidden: int, depth: int,
        n_bins: int = 8, bound: float = 5.0, rngs: nnx.Rngs,
    ):
        if kind not in ("spline", "affine"):
            raise ValueError(f"flow kind must be 'spline' or 'affine', got {kind!r}")
        self.kind, self.dim, self.bound, self.n_bins = kind, dim, float(bound), int(n_bins)
        self.mask = tuple(bool(m) for m in mask)  # static: part of the graph definition
        # static indices: the conditioner outputs parameters for the transformed dims only
        self.transformed = tuple(int(i) for i in np.flatnonzero(self.mask))
        self.conditioning = tuple(int(i) for i in np.flatnonzero(~np.asarray(self.mask)))
        self.n_raw = rational_quadratic.n_params(n_bins=n_bins) if kind == "spline" else affine.n_params()
        n_in = max(len(self.conditioning), 1)  # D = 1: the context alone (a zero input keeps one code path)
        self.net = ConditionedMLP(n_in, context_dim, hidden, len(self.transformed) * self.n_raw, depth, rngs=rngs,
                                  zero_last=True)

    def _raw(self, x, context):
        kept = x[..., list(self.conditioning)] if self.conditioning else jnp.zeros(x.shape[:-1] + (1,), x.dtype)
        raw = self.net(kept, context)  # context may be (B, 1, C) against x (B, n, D)
        return raw.reshape(raw.shape[:-1] + (len(self.transformed), self.n_raw))

    def _apply(self, x, context, inverse: bool):
        raw = self._raw(x, context)
        idx = list(self.transformed)
        xt = x[..., idx]
        if self.kind == "spline":
            fn = rational_quadratic.inverse if inverse else rational_quadratic.forward
            yt, logd = fn(xt, raw, bound=self.bound)
        else:
            yt, logd = (affine.inverse if inverse else affine.forward)(xt, raw)
        y = x.at[..., idx].set(yt)
        logd = jnp.sum(logd, axis=-1)
        return y, (-logd if inverse else logd)

    def forward(self, x, context):
        """Data → base direction; returns (y, log|det ∂y/∂x|)."""
        return self._apply(x, context, inverse=False)

    def inverse(self, y, context):
        """Base → data direction; returns (x, log|det ∂x/∂y|)."""
        return self._apply(y, context, inverse=True)


class ConditionalFlow(nnx.Module):
    """q(θ | c): loc-scale then `n_layers` couplings, base N(0, I_D).

    Args:
        dim: D, the number of θ dims (≥ 1). context_dim: C.
        kind: "spline" (rational-quadratic, default) or "affine".
        n_layers: coupling layers. hidden, depth: conditioner MLP width and hidden layers.
        n_bins, bound: spline bins and the half-width of its interval (θ is standardized, so 5 ≈ 5σ).
    """

    def __init__(
        self, dim: int, context_dim: int, *, kind: FlowKind = "spline", n_layers: int = 4, hidden: int = 64,
        depth: int = 2, n_bins: int = 8, bound: float = 5.0, rngs: nnx.Rngs,
    ):
        self.dim = dim
        self.loc_scale = ConditionalLocScale(dim, context_dim, hidden, depth, rngs=rngs)
        self.couplings = nnx.List([
            Coupling(dim, context_dim, m, kind=kind, hidden=hidden, depth=depth, n_bins=n_bins, bound=bound, rngs=rngs)
            for m in coupling_masks(dim, n_layers)
        ])

    def layers(self):
        return [self.loc_scale, *self.couplings]

    def to_base(self, theta, context):
        """θ (..., D), c (..., C) broadcastable against θ's batch shape → (u, log|det ∂u/∂θ|)."""
        total = jnp.zeros(theta.shape[:-1], theta.dtype)
        x = theta
        for layer in self.layers():
            x, ld = layer.forward(x, context)
            total = total + ld
        return x, total

    def from_base(self, u, context):
        """u (..., D) → (θ, log|det ∂θ/∂u|)."""
        total = jnp.zeros(u.shape[:-1], u.dtype)
        x = u
        for layer in reversed(self.layers()):
            x, ld = layer.inverse(x, context)
            total = total + ld
        return x, total

    def log_prob(self, theta, context):
        """log q(θ | c), shape (...,)."""
        u, ld = self.to_base(theta, context)
        return -0.5 * jnp.sum(u * u, axis=-1) - 0.5 * self.dim * math.log(2 * math.pi) + ld

    def sample_and_log_prob(self, key, context, n: int):
        """n draws per context row: context (B, C) → θ (B, n, D), log q (B, n)."""
        B = context.shape[0]
        u = jax.random.normal(key, (B, n, self.dim), context.dtype)
        theta, ld = self.from_base(u, context[:, None, :])  # context terms once per voxel, broadcast over draws
        logq = -0.5 * jnp.sum(u * u, axis=-1) - 0.5 * self.dim * math.log(2 * math.pi) - ld
        return theta, logq

    def sample(self, key, context, n: int):
        return self.sample_and_log_prob(key, context, n)[0]

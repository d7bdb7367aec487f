"""Encoders: a voxel's measurements (and optionally its protocol) → a context vector c (B, C).

`SetEncoder` (ARCHITECTURE.md decision 5): each measurement is a token (S/S0, protocol features
p ∈ R^F, see `features.py`). The first token layer is linear in [s, p], so it splits exactly as
    W [s, p] + b = s·w_s + (W_p p + b),
and the protocol half W_p p + b, (M, H), is computed ONCE per protocol (`protocol_embedding`) and
broadcast over voxels: volume inference pays for it once, not once per voxel. Then a per-token MLP,
then masked pooling over the set:
  - masked mean (what the measurements say on average),
  - masked max (the extreme responses: e.g. the direction of least attenuation),
  - attention pooling: softmax over tokens of a learnt score, masked (a learnt, data-dependent weighting,
    e.g. towards the b-shells that carry the information),
plus log(number of real measurements)/log(1000) (posterior width shrinks with the count; mean pooling
alone forgets it). Masked tokens enter no pooled quantity (their scores are −∞ and their values are
replaced before the max), so the context is exactly invariant to padding and, pooling being symmetric,
to the order of the measurements. A final MLP maps the pooled vector to c.

`MLPEncoder`: a fixed protocol (signals only, in a fixed order, M fixed) → MLP → c.

Both take an optional extra per-voxel vector (`extra`, e.g. the flattened DTI frame) appended
before the last MLP.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

from .mlp import MLP

_COUNT_SCALE = math.log(1000.0)


class SetEncoder(nnx.Module):
    """Permutation- and padding-invariant encoder of a measurement set.

    Args:
        feature_dim: F, protocol features per measurement. hidden: token width H.
        context_dim: C. depth: hidden layers of the token MLP and of the head MLP.
        extra_dim: size of the extra per-voxel input appended after pooling (0: none).
    """

    def __init__(self, feature_dim: int, hidden: int, context_dim: int, depth: int = 2, *, extra_dim: int = 0,
                 rngs: nnx.Rngs):
        self.signal_in = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (1, hidden))[0])
        self.protocol_in = nnx.Linear(feature_dim, hidden, rngs=rngs)
        self.token_mlp = MLP(hidden, hidden, hidden, max(depth - 1, 0), rngs=rngs)
        self.score = nnx.Linear(hidden, 1, rngs=rngs)
        self.head = MLP(3 * hidden + 1 + extra_dim, hidden, context_dim, depth, rngs=rngs)
        self.extra_dim = extra_dim

    def protocol_embedding(self, protocol: Float[Array, "... M F"]) -> Float[Array, "... M H"]:
        """The protocol half of the first token layer, W_p p + b. Compute once per protocol."""
        return self.protocol_in(protocol)

    def encode(
        self,
        signals: Float[Array, "B M"],
        mask: Bool[Array, "B M"],
        embedding: Float[Array, "M H"] | Float[Array, "B M H"],
        extra: Float[Array, "B E"] | None = None,
    ) -> Float[Array, "B C"]:
        """Context from signals and a precomputed `protocol_embedding` (shared (M, H) or per voxel)."""
        B, M = signals.shape
        H = embedding.shape[-1]
        emb = jnp.broadcast_to(embedding, (B, M, H))
        h = jax.nn.silu(signals[:, :, None] * self.signal_in[...][None, None, :] + emb)
        h = self.token_mlp(h)  # (B, M, H)
        m = mask[:, :, None]
        count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True).astype(h.dtype), 1.0)  # (B, 1)
        mean = jnp.sum(jnp.where(m, h, 0.0), axis=1) / count
        mx = jnp.max(jnp.where(m, h, -jnp.inf), axis=1)
        mx = jnp.where(jnp.isfinite(mx), mx, 0.0)  # a voxel with no measurement at all
        scores = jnp.where(mask, self.score(h)[..., 0], -jnp.inf)
        weights = jax.nn.softmax(scores, axis=1, where=mask)
        weights = jnp.where(mask, weights, 0.0)
        attn = jnp.sum(weights[:, :, None] * jnp.where(m, h, 0.0), axis=1)
        pooled = [mean, mx, attn, jnp.log(count) / _COUNT_SCALE]
        if self.extra_dim:
            pooled.append(extra)
        return self.head(jnp.concatenate(pooled, axis=-1))

    def __call__(self, signals, mask, protocol, extra=None):
        return self.encode(signals, mask, self.protocol_embedding(protocol), extra)


class MLPEncoder(nnx.Module):
    """Fixed protocol: signals (B, M) → MLP → c. Masked entries are zeroed (the mask is fixed anyway)."""

    def __init__(self, n_measurements: int, hidden: int, context_dim: int, depth: int = 2, *, extra_dim: int = 0,
                 rngs: nnx.Rngs):
        self.n_measurements, self.extra_dim = n_measurements, extra_dim
        self.net = MLP(n_measurements + extra_dim, hidden, context_dim, depth, rngs=rngs)

    def __call__(self, signals, mask, protocol=None, extra=None):
        if signals.shape[-1] != self.n_measurements:
            raise ValueError(f"MLPEncoder built for {self.n_measurements} measurements, got {signals.shape[-1]}")
        x = jnp.where(mask, signals, 0.0)
        if self.extra_dim:
            x = jnp.concatenate([x, extra], axis=-1)
        return self.net(x)

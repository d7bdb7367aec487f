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

`SeparableSetEncoder` (the default for new configs; the fast path of volume inference): every token
is mapped by a rank-K separable function of (signal, protocol),

    h_j = Σ_k g_k(s_j) A_k(p_j),    pooled = (1/n) Σ_j mask_j h_j   (H,)

with g(s) = [1, s, tanh(a_i s + c_i)] K learnt scalar functions of the signal and A(p) (M, K, H) an MLP
of the protocol features. A(p) depends on the protocol only, so for a volume it is computed ONCE and a
voxel's pooled vector is one contraction, einsum("bmk,mkh->bh"): B·M·K·H multiply-adds and no per-token
MLP. For K = 8, H = 64 that is 49k per voxel at M = 96, against 0.8M for `SetEncoder`'s per-token MLP
(benchmarks/networks.py measures both). A rank-K separable F(s, p) can represent the statistics the
tissue models are read from (per-shell mean attenuation, the signal-weighted tensor Σ s_j ĝĝᵀ, higher
angular moments): A is any function of ĝĝᵀ, b, δ, Δ. Mean pooling keeps the exact invariance to
padding and order; the count enters as log(n) like above.

Frame moments (`frame_moments` = T > 0): the separable encoder also pools T signal-weighted b-tensors
    M_t = (1/n) Σ_j Σ_k g_k(s_j) a_kt(b_j, δ_j, Δ_j, TE_j) B̂_j      (3 × 3 each)
(the weights depend on rotation-invariant protocol features only, so M_t rotates with the scanner
frame; computed by the same once-per-protocol contraction) and rotates them into the voxel's DTI frame
R before the head: R M_t Rᵀ. Those entries (e.g. the attenuation along and across the DTI axis, per
shell) do not depend on how the head is oriented in the scanner, so the head reads rotation-invariant
summaries of the directional signal instead of having to learn the product of scanner-frame moments
with the 9 frame numbers.

`MLPEncoder`: a fixed protocol (signals only, in a fixed order, M fixed) → MLP → c.

All take an optional extra per-voxel vector (`extra`, e.g. the flattened DTI frame) appended
before the last MLP.

Protocol groups: the protocol may be one (M, F) shared by all B voxels, (B, M, F) one per voxel, or
(G, M, F) with G dividing B, voxel b using protocol b // (B/G) (training draws a few protocols per
batch, each shared by B/G voxels, as in a volume; the protocol half is then computed G times, not B).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float

from .mlp import MLP

_COUNT_SCALE = math.log(1000.0)


def expand_groups(x: jax.Array, batch: int, base_ndim: int) -> jax.Array:
    """Per-protocol array → per-voxel: x is (...base) shared, or (G, ...base) with G | batch → (batch, ...base)."""
    if x.ndim == base_ndim:
        return jnp.broadcast_to(x, (batch,) + x.shape)
    G = x.shape[0]
    return jnp.broadcast_to(x[:, None], (G, voxels_per_group(G, batch)) + x.shape[1:]).reshape((batch,) + x.shape[1:])


def voxels_per_group(groups: int, batch: int) -> int:
    """batch / groups, or a ValueError when the groups do not divide the batch."""
    if batch % groups:
        raise ValueError(f"{groups} protocol groups do not divide the batch of {batch} voxels")
    return batch // groups


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
        emb = expand_groups(embedding, B, 2)
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


class SeparableSetEncoder(nnx.Module):
    """Rank-K separable token map with mean pooling (module docstring): the protocol half is all the work.

    Args:
        feature_dim: F, protocol features per measurement. hidden: H, pooled width and MLP width.
        context_dim: C. depth: hidden layers of the protocol MLP A(p) and of the head MLP.
        n_basis: K ≥ 3, scalar functions of the signal: 1, s and K − 2 learnt tanh(a s + c).
        extra_dim: size of the extra per-voxel input appended after pooling (0: none).
    """

    def __init__(self, feature_dim: int, hidden: int, context_dim: int, depth: int = 2, *, n_basis: int = 8,
                 extra_dim: int = 0, frame_moments: int = 0, rngs: nnx.Rngs):
        if n_basis < 3:
            raise ValueError(f"n_basis must be ≥ 3 (1, s and at least one learnt function), got {n_basis}")
        if frame_moments < 0:
            raise ValueError(f"frame_moments must be ≥ 0, got {frame_moments}")
        n_learnt = n_basis - 2
        # tanh(4 (s − centre)): steps spread over the range S/S0 takes (0 … 1), slopes and centres learnt.
        centres = (np.arange(n_learnt) + 0.5) / n_learnt
        self.basis_slope = nnx.Param(jnp.full((n_learnt,), 4.0, jnp.float32))
        self.basis_shift = nnx.Param(jnp.asarray(-4.0 * centres, jnp.float32))
        self.protocol_net = MLP(feature_dim, hidden, n_basis * hidden, depth, rngs=rngs)
        if frame_moments:
            # rotation-invariant protocol features only (b, δ, Δ, TE): the direction enters through B̂
            self.moment_net = MLP(len(_INVARIANT_FEATURES), hidden, n_basis * frame_moments, depth, rngs=rngs)
        self.head = MLP(hidden + 6 * frame_moments + 1 + extra_dim, hidden, context_dim, depth, rngs=rngs)
        self.n_basis, self.hidden, self.extra_dim, self.frame_moments = n_basis, hidden, extra_dim, frame_moments

    def protocol_embedding(self, protocol: Float[Array, "... M F"]) -> Float[Array, "... M K W"]:
        """A(p), (..., M, K, W) with W = H + 6·frame_moments: the whole protocol half. Compute once per protocol.

        The last 6·frame_moments columns are a_kt(b, δ, Δ, TE) ⊗ B̂ (six entries, `features.py` order), whose
        pooled sums are the signal-weighted tensors that `encode` rotates into the voxel's frame.
        """
        a = self.protocol_net(protocol)
        a = a.reshape(a.shape[:-1] + (self.n_basis, self.hidden))
        if not self.frame_moments:
            return a
        t = self.moment_net(protocol[..., _INVARIANT_FEATURES])
        t = t.reshape(t.shape[:-1] + (self.n_basis, self.frame_moments, 1)) * protocol[..., None, None, 1:7]
        return jnp.concatenate([a, t.reshape(t.shape[:-3] + (self.n_basis, 6 * self.frame_moments))], axis=-1)

    def basis(self, signals: Float[Array, "B M"]) -> Float[Array, "B M K"]:
        """g(s) = [1, s, tanh(a s + c)]."""
        shape = (1,) * signals.ndim + (-1,)
        learnt = jnp.tanh(signals[..., None] * self.basis_slope[...].reshape(shape) + self.basis_shift[...].reshape(shape))
        return jnp.concatenate([jnp.ones_like(signals)[..., None], signals[..., None], learnt], axis=-1)

    def encode(
        self,
        signals: Float[Array, "B M"],
        mask: Bool[Array, "B M"],
        embedding: Float[Array, "M K H"] | Float[Array, "G M K H"],
        extra: Float[Array, "B E"] | None = None,
        frame: Float[Array, "B 3 3"] | None = None,
    ) -> Float[Array, "B C"]:
        """Context from signals and a precomputed `protocol_embedding` (shared, or per group / voxel).

        `frame` (rows u, v, e₁; identity when None) is the voxel's frame the moment tensors are rotated into.
        """
        return self.head(self.head_input(signals, mask, embedding, extra, frame))

    def head_input(self, signals, mask, embedding, extra=None, frame=None) -> Float[Array, "B I"]:
        """[pooled (H), log count, rotated moments (6·frame_moments), extra]: what the head MLP reads."""
        B, M = signals.shape
        g = jnp.where(mask[..., None], self.basis(signals), 0.0)  # masked tokens contribute nothing
        count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True).astype(g.dtype), 1.0)  # (B, 1)
        if embedding.ndim == 3:
            pooled = jnp.einsum("bmk,mkh->bh", g, embedding)
        else:
            G = embedding.shape[0]
            g = g.reshape(G, voxels_per_group(G, B), M, self.n_basis)
            pooled = jnp.einsum("grmk,gmkh->grh", g, embedding).reshape(B, -1)
        pooled = pooled / count
        parts = [pooled[:, : self.hidden], jnp.log(count) / _COUNT_SCALE]
        if self.frame_moments:
            tensors = _six_to_matrix(pooled[:, self.hidden :].reshape(B, self.frame_moments, 6))
            R = jnp.broadcast_to(jnp.eye(3, dtype=pooled.dtype), (B, 3, 3)) if frame is None else frame
            rotated = jnp.einsum("via,vtab,vjb->vtij", R, tensors, R)  # R T Rᵀ: the tensors in the voxel frame
            parts.append(_matrix_to_six(rotated).reshape(B, 6 * self.frame_moments))
        if self.extra_dim:
            parts.append(extra)
        return jnp.concatenate(parts, axis=-1)

    def __call__(self, signals, mask, protocol, extra=None, frame=None):
        return self.encode(signals, mask, self.protocol_embedding(protocol), extra, frame)


# columns of `features.protocol_features` that do not change under a rotation: b, δ, Δ, TE
_INVARIANT_FEATURES = np.array([0, 7, 8, 9])
_ROOT2 = math.sqrt(2.0)


def _six_to_matrix(six: Float[Array, "... 6"]) -> Float[Array, "... 3 3"]:
    """[xx, yy, zz, √2xy, √2xz, √2yz] → the symmetric 3×3 matrix."""
    xx, yy, zz = six[..., 0], six[..., 1], six[..., 2]
    xy, xz, yz = six[..., 3] / _ROOT2, six[..., 4] / _ROOT2, six[..., 5] / _ROOT2
    rows = [jnp.stack([xx, xy, xz], -1), jnp.stack([xy, yy, yz], -1), jnp.stack([xz, yz, zz], -1)]
    return jnp.stack(rows, -2)


def _matrix_to_six(m: Float[Array, "... 3 3"]) -> Float[Array, "... 6"]:
    """The inverse of `_six_to_matrix` (Frobenius norm preserved)."""
    return jnp.stack([m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], _ROOT2 * m[..., 0, 1], _ROOT2 * m[..., 0, 2],
                      _ROOT2 * m[..., 1, 2]], -1)


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

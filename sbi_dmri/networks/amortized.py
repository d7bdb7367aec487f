"""AmortizedPosterior: encoder → context c → conditional flow q(θ | c) and a point head.

All quantities are in the standardized unconstrained θ space of `ParameterSpace`; `Posterior`
(posterior.py) maps them to constrained units.

Batch (a dict of arrays, docs/network_contract.md): signals (B, M) S/S0; mask (B, M) bool; protocol
(M, F) shared, (B, M, F) per voxel, or (G, M, F) per group of B/G consecutive voxels (set encoders); frame (B, 3, 3) (used only with `frame_input=True`); snr (B,) S0/σ (used only with
`snr_input=True`); theta
(B, D) (training only).

Point head (the fastest inference path, one forward pass, no sampling): from the same context, the
posterior mean (trained by squared error) and quantiles (trained by the pinball loss, Koenker &
Bassett 1978) of θ. Quantiles are ordered by construction: the lowest level plus cumulative softplus
increments.

Jitting: small per-voxel networks lose much time to `nnx.jit`'s Python overhead, so `apply_fns`
returns plain `jax.jit` functions of (state, ...) built on `nnx.merge(graphdef, state)`; each traces
once per input shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .encoders import MLPEncoder, SeparableSetEncoder, SetEncoder
from .flows import ConditionalFlow
from .mlp import MLP

Batch = Mapping[str, jax.Array]


def snr_feature(snr):
    """The network's SNR input, log(S0/σ)/4: O(1) over the SNRs of dMRI (10 → 0.58, 80 → 1.10)."""
    return jnp.log(snr) / 4.0


class AmortizedPosterior(nnx.Module):
    """Encoder + conditional flow + point head.

    Args:
        parameter_dim: D. feature_dim: F (protocol features, `features.FEATURE_DIM`).
        encoder: "separable" (any protocol; rank-K separable tokens, the protocol half is all the work, the
            fastest for volumes), "set" (any protocol; per-token MLP, mean/max/attention pooling) or "mlp"
            (fixed protocol of `n_measurements`). See encoders.py.
        n_basis: K, signal functions of the separable encoder.
        hidden, depth: width and hidden layers of every MLP. context_dim: C (default `hidden`).
        flow: "spline" or "affine" couplings; flow_layers: their number; flow_hidden: the width of their
            conditioners (default `hidden`; the flow runs once per draw, so its width sets the sampling cost).
        quantiles: levels in (0, 1), strictly increasing, predicted by the point head.
        frame_input: append the flattened frame (9 numbers) to the encoder's pooled vector; use it for
            models with orientation (the posterior of the axis chart depends on the frame).
        snr_input: the voxel's SNR = S0/σ (batch["snr"]) is an input: the posterior is then conditional on
            the noise level, q(θ | y, SNR), so test sets at a fixed SNR judge it correctly and the trust
            check's likelihood uses the same σ. Without it the network marginalises over the training SNR
            range and is over-confident at the low end of the range (measured; see the model card).
        point_weight: weight of the point-head losses relative to the flow's NLL.
        frame_moments: separable encoder only: T signal-weighted b-tensor moments Σ_j w_t(s_j, b_j, δ, Δ) B̂_j,
            pooled in the scanner frame (once-per-protocol cost) and rotated into the voxel's frame
            (batch["frame"]) before the head, so the rotation-invariant summaries of the directional signal
            (e.g. the attenuation along and across the DTI axis per shell) are inputs instead of something
            the head must learn to compute from scanner-frame moments and the frame. 0: off.
    """

    def __init__(
        self, *, parameter_dim: int, feature_dim: int, encoder: Literal["separable", "set", "mlp"] = "set",
        n_measurements: int | None = None, hidden: int = 64, depth: int = 2,
        flow: Literal["spline", "affine"] = "spline", flow_layers: int = 4,
        quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95), context_dim: int | None = None,
        frame_input: bool = False, point_weight: float = 1.0, n_bins: int = 8, n_basis: int = 8,
        flow_hidden: int | None = None, snr_input: bool = False, frame_moments: int = 0, rngs: nnx.Rngs,
    ):
        q = np.asarray(quantiles, np.float64)
        if q.ndim != 1 or q.size < 1 or np.any(q <= 0) or np.any(q >= 1) or np.any(np.diff(q) <= 0):
            raise ValueError(f"quantiles must be strictly increasing levels in (0, 1), got {quantiles}")
        C = hidden if context_dim is None else context_dim
        extra = (9 if frame_input else 0) + (1 if snr_input else 0)
        if encoder == "separable":
            self.encoder = SeparableSetEncoder(feature_dim, hidden, C, depth, n_basis=n_basis, extra_dim=extra,
                                               frame_moments=frame_moments, rngs=rngs)
        elif encoder == "set":
            self.encoder = SetEncoder(feature_dim, hidden, C, depth, extra_dim=extra, rngs=rngs)
        elif encoder == "mlp":
            if n_measurements is None:
                raise ValueError("encoder='mlp' needs n_measurements (the fixed protocol's length)")
            self.encoder = MLPEncoder(n_measurements, hidden, C, depth, extra_dim=extra, rngs=rngs)
        else:
            raise ValueError(f"encoder must be 'separable', 'set' or 'mlp', got {encoder!r}")
        if frame_moments and encoder != "separable":
            raise ValueError(f"frame_moments needs encoder='separable', got {encoder!r}")
        self.encoder_kind, self.frame_input, self.snr_input = encoder, frame_input, snr_input
        self.dim, self.quantile_levels, self.point_weight = parameter_dim, tuple(float(x) for x in q), float(point_weight)
        self.flow = ConditionalFlow(parameter_dim, C, kind=flow, n_layers=flow_layers,
                                    hidden=hidden if flow_hidden is None else flow_hidden, depth=depth,
                                    n_bins=n_bins, rngs=rngs)
        self.point_head = MLP(C, hidden, parameter_dim * (1 + len(q)), depth, rngs=rngs)

    # ------------------------------------------------------------------ encoder
    def _extra(self, batch):
        B = batch["signals"].shape[0]
        parts = []
        if self.frame_input:
            frame = batch.get("frame")
            if frame is None:
                frame = jnp.broadcast_to(jnp.eye(3, dtype=batch["signals"].dtype), (B, 3, 3))
            parts.append(frame.reshape(B, 9))
        if self.snr_input:
            if batch.get("snr") is None:
                raise ValueError("this network is conditioned on the SNR: the batch needs 'snr' (B,) = S0/σ")
            parts.append(snr_feature(batch["snr"]).reshape(B, 1).astype(batch["signals"].dtype))
        return jnp.concatenate(parts, axis=-1) if parts else None

    @property
    def takes_protocol(self) -> bool:
        """True for the set encoders (any protocol; `protocol_embedding` is their per-protocol half)."""
        return self.encoder_kind in ("separable", "set")

    def protocol_embedding(self, protocol):
        """Set encoders only: the per-protocol half of the encoder (compute once per protocol)."""
        return self.encoder.protocol_embedding(protocol)

    def context_from_embedding(self, batch: Batch, embedding):
        """Context with a precomputed `protocol_embedding` (volume inference)."""
        return self.encoder.encode(batch["signals"], batch["mask"], embedding, self._extra(batch), *self._frame(batch))

    def context(self, batch: Batch) -> jax.Array:
        """(B, C)."""
        return self.encoder(batch["signals"], batch["mask"], batch.get("protocol"), self._extra(batch), *self._frame(batch))

    def _frame(self, batch) -> tuple:
        """The frame argument of the separable encoder's moment tensors (none for the other encoders)."""
        return (batch.get("frame"),) if self.encoder_kind == "separable" else ()

    # ------------------------------------------------------------------ flow and head
    def log_prob(self, context, theta):
        """log q(θ | c): context (B, C), θ (B, D) or (B, n, D) → (B,) or (B, n)."""
        if theta.ndim == 3:
            context = context[:, None, :]  # broadcast inside the flow: context terms once per voxel
        return self.flow.log_prob(theta, context)

    def sample(self, context, key, n: int):
        """(B, n, D) draws of θ."""
        return self.flow.sample(key, context, n)

    def sample_and_log_prob(self, context, key, n: int):
        """((B, n, D) draws of θ, (B, n) their log q): one pass through the flow instead of two."""
        return self.flow.sample_and_log_prob(key, context, n)

    def point(self, context):
        """{"mean": (B, D), "quantiles": (B, Q, D)} in θ space."""
        B, D, Q = context.shape[0], self.dim, len(self.quantile_levels)
        out = self.point_head(context)
        mean = out[:, :D]
        raw = out[:, D:].reshape(B, Q, D)
        steps = jnp.concatenate([raw[:, :1], jax.nn.softplus(raw[:, 1:])], axis=1)
        return {"mean": mean, "quantiles": jnp.cumsum(steps, axis=1)}

    def loss(self, batch: Batch):
        """(scalar, metrics): flow NLL of θ + point_weight · (MSE of the mean + pinball of the quantiles)."""
        theta = batch["theta"]
        c = self.context(batch)
        nll = -jnp.mean(self.flow.log_prob(theta, c))
        pt = self.point(c)
        mse = jnp.mean((pt["mean"] - theta) ** 2)
        tau = jnp.asarray(self.quantile_levels, theta.dtype)[None, :, None]
        err = theta[:, None, :] - pt["quantiles"]
        pinball = jnp.mean(jnp.sum(jnp.maximum(tau * err, (tau - 1.0) * err), axis=1))
        total = nll + self.point_weight * (mse + pinball)
        return total, {"loss": total, "nll": nll, "mse": mse, "pinball": pinball}


class ApplyFns(NamedTuple):
    """Plain `jax.jit` functions of the network state (from `nnx.split(model)`)."""

    loss: callable  # (state, batch) -> (loss, metrics)
    loss_and_grad: callable  # (state, batch) -> ((loss, metrics), grads like state)
    context: callable  # (state, batch) -> (B, C)
    protocol_embedding: callable  # (state, protocol) -> (M, H)            [set encoder]
    context_from_embedding: callable  # (state, batch, embedding) -> (B, C)  [set encoder]
    sample: callable  # (state, context, key, n) -> (B, n, D); n static
    log_prob: callable  # (state, context, theta) -> (B,) | (B, n)
    point: callable  # (state, context) -> {"mean", "quantiles"}


def apply_fns(graphdef) -> ApplyFns:
    """Jitted pure entry points for a network's `graphdef` (`graphdef, state = nnx.split(model)`).

    Jit once, call with any state of the same structure (e.g. each training step's new parameters).
    """

    def m(state):
        return nnx.merge(graphdef, state)

    def loss(state, batch):
        return m(state).loss(batch)

    return ApplyFns(
        loss=jax.jit(loss),
        loss_and_grad=jax.jit(jax.value_and_grad(loss, has_aux=True)),
        context=jax.jit(lambda state, batch: m(state).context(batch)),
        protocol_embedding=jax.jit(lambda state, protocol: m(state).protocol_embedding(protocol)),
        context_from_embedding=jax.jit(lambda state, batch, emb: m(state).context_from_embedding(batch, emb)),
        sample=jax.jit(lambda state, context, key, n: m(state).sample(context, key, n), static_argnames="n"),
        log_prob=jax.jit(lambda state, context, theta: m(state).log_prob(context, theta)),
        point=jax.jit(lambda state, context: m(state).point(context)),
    )

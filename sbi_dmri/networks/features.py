"""Per-measurement protocol features, the "protocol half" of each set-encoder token.

A token is (S/S0, features) with, per measurement, F = `FEATURE_DIM` = 10 features:

    [b, B̂_xx, B̂_yy, B̂_zz, √2 B̂_xy, √2 B̂_xz, √2 B̂_yz, δ/100, Δ/100, TE/100]

b in ms/µm² (O(1) already), times in ms divided by 100 ms (O(1) for clinical and preclinical
PGSE). B̂ = B / b is the normalised b-tensor: ĝĝᵀ for linear (PGSE) encoding, so the features are
the same for ĝ and −ĝ (the signal is), and the √2 on the off-diagonal entries makes the Euclidean
norm of the six entries the Frobenius norm of B̂ (1 for any linear encoding), so no direction is
favoured. At b = 0 the direction is meaningless and B̂ is set to 0. Undefined δ, Δ (free
waveforms) and a missing TE become 0.

Features depend only on the protocol, so they are computed once per protocol (not per voxel), and
`protocol_features_from_arrays` is differentiable in b and ĝ (protocol design through a network).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ..acquisition import Acquisition

FEATURE_DIM = 10
FEATURE_NAMES = ("b", "Bxx", "Byy", "Bzz", "√2Bxy", "√2Bxz", "√2Byz", "delta/100ms", "Delta/100ms", "TE/100ms")
TIME_SCALE_MS = 100.0
_SQRT2 = float(np.sqrt(2.0))


def protocol_features_from_arrays(
    bvalues: Float[Array, " M"],
    btensor_unit: Float[Array, "M 3 3"],
    delta: Float[Array, " M"],
    Delta: Float[Array, " M"],
    TE: Float[Array, " M"],
) -> Float[Array, "M 10"]:
    """Features from plain arrays (b ms/µm², B̂ = B/b dimensionless, δ, Δ, TE ms; NaN → 0)."""
    B = btensor_unit
    six = jnp.stack(
        [B[:, 0, 0], B[:, 1, 1], B[:, 2, 2], _SQRT2 * B[:, 0, 1], _SQRT2 * B[:, 0, 2], _SQRT2 * B[:, 1, 2]], axis=-1
    )
    times = jnp.stack([delta, Delta, TE], axis=-1) / TIME_SCALE_MS
    times = jnp.where(jnp.isfinite(times), times, 0.0)
    return jnp.concatenate([bvalues[:, None], six, times], axis=-1).astype(jnp.float32)


def protocol_features(acquisition: Acquisition) -> Float[Array, "M 10"]:
    """(M, FEATURE_DIM) float32 features of an `Acquisition` (PGSE or free waveform)."""
    b = jnp.asarray(acquisition.bvalues, jnp.float32)
    B = jnp.asarray(acquisition.btensor, jnp.float32)
    positive = b > 0
    # Double where: no 0/0 at b = 0, and the gradient stays finite there.
    B_unit = jnp.where(positive[:, None, None], B / jnp.where(positive, b, 1.0)[:, None, None], 0.0)
    n = b.shape[0]
    TE = np.zeros(n) if acquisition.TE is None else np.asarray(acquisition.TE)
    return protocol_features_from_arrays(
        b, B_unit, jnp.asarray(acquisition.delta, jnp.float32), jnp.asarray(acquisition.Delta, jnp.float32),
        jnp.asarray(TE, jnp.float32),
    )


def pad_measurements(
    features: Float[Array, "M F"], signals: Float[Array, "B M"], m_max: int
) -> tuple[Float[Array, "M_max F"], Float[Array, "B M_max"], Bool[Array, "B M_max"]]:
    """Pad one protocol's features and its voxels' signals to `m_max` measurements, with the mask.

    Padded tokens carry zeros; the encoder ignores them exactly (masked pooling).
    """
    m = features.shape[0]
    if m > m_max:
        raise ValueError(f"protocol has {m} measurements, more than m_max = {m_max}")
    pad = m_max - m
    features = jnp.pad(features, ((0, pad), (0, 0)))
    signals = jnp.pad(signals, ((0, 0), (0, pad)))
    mask = jnp.broadcast_to(jnp.arange(m_max)[None, :] < m, signals.shape)
    return features, signals, mask

"""Set encoder: permutation and padding invariance, protocol half computed once = naive per voxel."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sbi_dmri.networks.encoders import MLPEncoder, SetEncoder
from sbi_dmri.networks.features import FEATURE_DIM, pad_measurements, protocol_features

from .conftest import ball_stick_protocol

B, M, H = 5, 62, 16


def _setup():
    enc = SetEncoder(FEATURE_DIM, H, 8, 2, extra_dim=9, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(enc)
    protocol = protocol_features(ball_stick_protocol())
    signals = jax.random.uniform(jax.random.PRNGKey(1), (B, M), minval=0.1, maxval=1.0)
    extra = jax.random.normal(jax.random.PRNGKey(2), (B, 9))
    return enc, graphdef, state, protocol, signals, extra


def test_protocol_features_are_sign_invariant_and_scaled():
    acq = ball_stick_protocol()
    f = protocol_features(acq)
    flipped = type(acq).pgse(acq.bvalues, -acq.directions, delta=acq.delta, Delta=acq.Delta, TE=acq.TE)
    np.testing.assert_allclose(protocol_features(flipped), f, atol=1e-7)
    six = np.asarray(f[2:, 1:7])
    np.testing.assert_allclose(np.linalg.norm(six, axis=1), 1.0, atol=1e-5)  # Frobenius norm of ĝĝᵀ
    np.testing.assert_allclose(f[:2, 1:7], 0.0)  # b = 0: no direction
    np.testing.assert_allclose(f[:, [0, 7, 8, 9]][5], [1.0, 0.1, 0.3, 0.6], rtol=1e-6)


def test_permutation_and_padding_invariance():
    enc, graphdef, state, protocol, signals, extra = _setup()
    mask = jnp.ones((B, M), bool)

    @jax.jit
    def ctx(state, s, m, p, e):
        return nnx.merge(graphdef, state)(s, m, p, e)

    ref = ctx(state, signals, mask, protocol, extra)
    perm = jax.random.permutation(jax.random.PRNGKey(3), M)
    np.testing.assert_allclose(ctx(state, signals[:, perm], mask, protocol[perm], extra), ref, atol=1e-5)
    # padding with garbage tokens (huge signals, random features) behind a False mask changes nothing
    p_pad, s_pad, m_pad = pad_measurements(protocol, signals, M + 10)
    s_pad = s_pad.at[:, M:].set(1e3)
    p_pad = p_pad.at[M:].set(jax.random.normal(jax.random.PRNGKey(4), (10, FEATURE_DIM)) * 50)
    np.testing.assert_allclose(ctx(state, s_pad, m_pad, p_pad, extra), ref, atol=1e-5)
    # ... even with the padding interleaved and shuffled
    perm2 = jax.random.permutation(jax.random.PRNGKey(5), M + 10)
    np.testing.assert_allclose(ctx(state, s_pad[:, perm2], m_pad[:, perm2], p_pad[perm2], extra), ref, atol=1e-5)
    # and it does depend on the signals and on which tokens are real
    assert float(jnp.max(jnp.abs(ctx(state, signals * 0.9, mask, protocol, extra) - ref))) > 1e-3
    assert float(jnp.max(jnp.abs(ctx(state, signals, mask.at[:, :20].set(False), protocol, extra) - ref))) > 1e-3


def test_protocol_half_once_equals_naive_per_voxel():
    enc, graphdef, state, protocol, signals, extra = _setup()
    mask = jnp.ones((B, M), bool)

    @jax.jit
    def both(state, s, m, p, e):
        e_ = nnx.merge(graphdef, state)
        once = e_.encode(s, m, e_.protocol_embedding(p), e)  # (M, H) embedding shared by all voxels
        # naive: each voxel's tokens [s, p] through the full first layer W [s; p] + b, no split
        W = jnp.concatenate([e_.signal_in[...][None, :], e_.protocol_in.kernel[...]], axis=0)  # (1 + F, H)
        tokens = jnp.concatenate([s[:, :, None], jnp.broadcast_to(p, (B,) + p.shape)], axis=-1)
        first = tokens @ W + e_.protocol_in.bias[...][None, None, :]
        split_first = s[:, :, None] * e_.signal_in[...][None, None, :] + e_.protocol_embedding(p)[None]
        naive = e_.encode(s, m, e_.protocol_embedding(jnp.broadcast_to(p, (B,) + p.shape)), e)
        return once, naive, first, split_first

    once, naive, first, split_first = both(state, signals, mask, protocol, extra)
    np.testing.assert_allclose(split_first, first, atol=1e-5)
    np.testing.assert_allclose(once, naive, atol=1e-5)


def test_mlp_encoder_ignores_masked_entries():
    enc = MLPEncoder(M, 16, 8, 2, rngs=nnx.Rngs(0))
    s = jax.random.uniform(jax.random.PRNGKey(1), (B, M))
    mask = jnp.ones((B, M), bool).at[:, -3:].set(False)
    np.testing.assert_allclose(enc(s, mask), enc(s.at[:, -3:].set(99.0), mask), atol=1e-6)

"""Set encoders: permutation and padding invariance, protocol half computed once = naive per voxel,
protocol groups = per-voxel protocols, and the separable encoder's contraction = its token sum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sbi_dmri.networks.encoders import MLPEncoder, SeparableSetEncoder, SetEncoder
from sbi_dmri.networks.features import FEATURE_DIM, pad_measurements, protocol_features

from .conftest import ball_stick_protocol

B, M, H = 5, 62, 16


ENCODERS = {"set": SetEncoder, "separable": SeparableSetEncoder}


def _setup(kind="set"):
    enc = ENCODERS[kind](FEATURE_DIM, H, 8, 2, extra_dim=9, rngs=nnx.Rngs(0))
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


@pytest.mark.parametrize("kind", ["set", "separable"])
def test_permutation_and_padding_invariance(kind):
    enc, graphdef, state, protocol, signals, extra = _setup(kind)
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


@pytest.mark.parametrize("kind", ["set", "separable"])
def test_protocol_groups_equal_per_voxel_protocols(kind):
    """(G, M, F) protocols, voxel b using group b // (B/G), = the (B, M, F) per-voxel expansion."""
    enc, graphdef, state, protocol, _, _ = _setup(kind)
    G, r = 3, 2
    signals = jax.random.uniform(jax.random.PRNGKey(1), (G * r, M), minval=0.1, maxval=1.0)
    extra = jax.random.normal(jax.random.PRNGKey(2), (G * r, 9))
    mask = jnp.ones((G * r, M), bool).at[2:4, -7:].set(False)
    protocols = jnp.stack([protocol, protocol * 1.1, protocol[::-1]])  # three different tables
    per_voxel = jnp.repeat(protocols, r, axis=0)
    grouped = enc(signals, mask, protocols, extra)
    np.testing.assert_allclose(grouped, enc(signals, mask, per_voxel, extra), atol=1e-5)
    assert float(jnp.max(jnp.abs(grouped - enc(signals, mask, jnp.repeat(protocols[::-1], r, axis=0), extra)))) > 1e-3
    with pytest.raises(ValueError, match="divide"):
        enc(signals[:5], mask[:5], protocols, extra[:5])


def test_separable_contraction_equals_explicit_token_sum():
    """pooled = (1/n) Σ_j mask_j Σ_k g_k(s_j) A_k(p_j), written out token by token in NumPy."""
    enc, _, _, protocol, signals, _ = _setup("separable")
    mask = jnp.ones((B, M), bool).at[1, 10:30].set(False)
    A = np.asarray(enc.protocol_embedding(protocol), np.float64)  # (M, K, H)
    g = np.asarray(enc.basis(signals), np.float64)  # (B, M, K)
    np.testing.assert_allclose(g[..., 0], 1.0)
    np.testing.assert_allclose(g[..., 1], np.asarray(signals))
    m = np.asarray(mask)
    expected = np.stack([sum(g[b, j] @ A[j] for j in range(M) if m[b, j]) / m[b].sum() for b in range(B)])
    # the head's input is [pooled, log n / log 1000, extra]; compare the pooled part through a probe
    captured = {}
    head = enc.head
    enc.head = lambda x: captured.setdefault("x", x)
    try:
        enc.encode(signals, mask, enc.protocol_embedding(protocol), jnp.zeros((B, 9)))
    finally:
        enc.head = head
    np.testing.assert_allclose(np.asarray(captured["x"])[:, :H], expected, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(captured["x"])[:, H], np.log(m.sum(1)) / np.log(1000.0), rtol=1e-6)


def test_frame_moments_rotate_with_the_voxel_frame():
    """Rotating the scanner directions by Q and the voxel frame R to R Qᵀ leaves the rotated moment tensors
    unchanged (what the head reads does not depend on how the head sits in the scanner); rotating the
    directions alone changes them; and the moments equal the explicit token sum R M_t Rᵀ."""
    T = 3
    enc = SeparableSetEncoder(FEATURE_DIM, H, 8, 2, frame_moments=T, rngs=nnx.Rngs(0))
    acq = ball_stick_protocol()
    signals = jax.random.uniform(jax.random.PRNGKey(1), (B, M), minval=0.1, maxval=1.0)
    mask = jnp.ones((B, M), bool).at[2, 5:25].set(False)
    R = np.linalg.qr(np.random.default_rng(0).normal(size=(B, 3, 3)))[0]
    Q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rotated_acq = type(acq).pgse(acq.bvalues, acq.directions @ Q.T, delta=acq.delta, Delta=acq.Delta, TE=acq.TE)

    def moments(a, frame):
        x = enc.head_input(signals, mask, enc.protocol_embedding(protocol_features(a)), None, jnp.asarray(frame, jnp.float32))
        return np.asarray(x[:, H + 1 : H + 1 + 6 * T], np.float64)

    base = moments(acq, R)
    np.testing.assert_allclose(moments(rotated_acq, R @ Q.T), base, atol=2e-5)
    assert np.max(np.abs(moments(rotated_acq, R) - base)) > 1e-3
    # explicit: M_t = (1/n) Σ_j Σ_k g_k(s_j) a_kt(p_j) ĝ_j ĝ_jᵀ, then R M_t Rᵀ
    p = protocol_features(acq)
    a = np.asarray(enc.moment_net(p[:, np.array([0, 7, 8, 9])]), np.float64).reshape(M, enc.n_basis, T)
    g = np.asarray(enc.basis(signals), np.float64)
    b = np.asarray(acq.bvalues)
    gg = np.where((b > 0)[:, None, None], np.einsum("ma,mb->mab", acq.directions, acq.directions), 0.0)
    m = np.asarray(mask)
    for v in range(B):
        Mt = np.einsum("mk,mkt,mab->tab", g[v] * m[v][:, None], a, gg) / m[v].sum()
        Rt = np.einsum("ia,tab,jb->tij", R[v], Mt, R[v])
        six = np.stack([Rt[:, 0, 0], Rt[:, 1, 1], Rt[:, 2, 2], np.sqrt(2) * Rt[:, 0, 1], np.sqrt(2) * Rt[:, 0, 2],
                        np.sqrt(2) * Rt[:, 1, 2]], -1)
        np.testing.assert_allclose(base[v], six.reshape(-1), rtol=2e-4, atol=2e-5)

"""The flow conditioners' split first layer: the same function as an MLP of [x, c], with the context
term computed once per voxel and broadcast over draws."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sbi_dmri.networks.flows import ConditionalFlow
from sbi_dmri.networks.mlp import MLP, ConditionedMLP


def test_split_first_layer_equals_mlp_of_concatenation():
    d, C, H, out = 3, 7, 16, 5
    split = ConditionedMLP(d, C, H, out, 2, rngs=nnx.Rngs(0))
    plain = MLP(d + C, H, out, 2, rngs=nnx.Rngs(1))
    # copy the split weights into the plain MLP: W = [W_x; W_c], b = b_c
    plain.hidden_layers[0].kernel[...] = jnp.concatenate([split.x_in.kernel[...], split.context_in.kernel[...]], axis=0)
    plain.hidden_layers[0].bias[...] = split.context_in.bias[...]
    plain.hidden_layers[1].kernel[...] = split.rest.hidden_layers[0].kernel[...]
    plain.hidden_layers[1].bias[...] = split.rest.hidden_layers[0].bias[...]
    plain.out.kernel[...] = split.rest.out.kernel[...]
    plain.out.bias[...] = split.rest.out.bias[...]
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, d))
    c = jax.random.normal(jax.random.PRNGKey(1), (4, 1, C))
    expected = plain(jnp.concatenate([x, jnp.broadcast_to(c, (4, 6, C))], axis=-1))
    np.testing.assert_allclose(split(x, c), expected, rtol=1e-5, atol=1e-6)


def test_flow_draws_and_density_with_broadcast_context_equal_explicit_broadcast():
    flow = ConditionalFlow(4, 8, n_layers=4, hidden=16, rngs=nnx.Rngs(0))
    # move the zero-initialised last layers away from zero so the flow is not the identity
    params = nnx.state(flow, nnx.Param)
    nnx.update(flow, jax.tree_util.tree_map(
        lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(a.size), a.shape), params))
    ctx = jax.random.normal(jax.random.PRNGKey(2), (3, 8))
    theta, logq = flow.sample_and_log_prob(jax.random.PRNGKey(3), ctx, 5)  # context (B, 1, C) inside
    u = jax.random.normal(jax.random.PRNGKey(3), (3, 5, 4))
    theta_explicit, _ = flow.from_base(u, jnp.broadcast_to(ctx[:, None, :], (3, 5, 8)))
    np.testing.assert_allclose(theta, theta_explicit, rtol=1e-6, atol=1e-6)
    explicit = flow.log_prob(theta, jnp.broadcast_to(ctx[:, None, :], (3, 5, 8)))
    np.testing.assert_allclose(logq, explicit, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flow.log_prob(theta, ctx[:, None, :]), explicit, rtol=1e-5, atol=1e-5)
    assert float(jnp.std(logq)) > 0.1  # a non-trivial flow

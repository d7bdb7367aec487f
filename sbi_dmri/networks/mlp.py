"""A plain multilayer perceptron (Flax NNX), the building block of encoders, conditioners, heads."""

from __future__ import annotations

import jax
from flax import nnx


class MLP(nnx.Module):
    """x (..., d_in) → (..., d_out): `depth` hidden layers of width `hidden`, SiLU activations.

    `zero_last=True` zero-initialises the output layer, so flows start as the identity and heads at 0.
    """

    def __init__(self, d_in: int, hidden: int, d_out: int, depth: int, *, rngs: nnx.Rngs, zero_last: bool = False):
        sizes = [d_in] + [hidden] * depth
        self.hidden_layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        init = nnx.initializers.zeros_init() if zero_last else nnx.initializers.lecun_normal()
        self.out = nnx.Linear(sizes[-1], d_out, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden_layers:
            x = jax.nn.silu(layer(x))
        return self.out(x)


class ConditionedMLP(nnx.Module):
    """(x (..., d_in), context (..., C)) → (..., d_out), with the first layer split as W_x x + (W_c c + b).

    The same function as `MLP(d_in + C, …)` on [x, c], but x and c may have different batch shapes
    that broadcast: a flow draws n samples per voxel with x (B, n, d_in) and c (B, 1, C), so the context
    term is computed once per voxel instead of once per draw (the bulk of the first layer when C ≫ d_in).
    """

    def __init__(self, d_in: int, context_dim: int, hidden: int, d_out: int, depth: int, *, rngs: nnx.Rngs,
                 zero_last: bool = False):
        if depth < 1:
            raise ValueError(f"ConditionedMLP needs depth ≥ 1 (its first hidden layer takes the context), got {depth}")
        self.x_in = nnx.Linear(d_in, hidden, use_bias=False, rngs=rngs)
        self.context_in = nnx.Linear(context_dim, hidden, rngs=rngs)
        self.rest = MLP(hidden, hidden, d_out, depth - 1, rngs=rngs, zero_last=zero_last)

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        return self.rest(jax.nn.silu(self.x_in(x) + self.context_in(context)))

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

"""Shared helpers for the network tests."""

import jax
import numpy as np
from flax import nnx


def perturb(module, key, scale=0.3):
    """Randomise every parameter in place (zero-initialised flows start at the identity, which would
    make inverse and log-det tests trivially pass)."""
    graphdef, state = nnx.split(module)
    nnx.update(module, _perturbed(state, key, scale))
    return module


@jax.jit
def _perturbed(state, key, scale):
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(key, len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, leaves)


def ball_stick_protocol():
    """2 b0 + 30 directions at b = 1 and b = 2 ms/µm² (δ = 10, Δ = 30 ms)."""
    from sbi_dmri.acquisition import Acquisition

    rng = np.random.default_rng(0)
    g = rng.normal(size=(60, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    b = np.concatenate([[0.0, 0.0], np.full(30, 1.0), np.full(30, 2.0)])
    g = np.concatenate([np.zeros((2, 3)) + [1, 0, 0], g])
    return Acquisition.pgse(b, g, delta=10.0, Delta=30.0, TE=60.0)

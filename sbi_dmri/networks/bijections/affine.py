"""Elementwise affine map y = x·exp(s) + t (Dinh et al. 2017, RealNVP), with a soft bound on |s|.

Raw conditioner outputs per dimension: (t, s_raw); s = S_MAX·tanh(s_raw/S_MAX) keeps the scale in
[e^−S_MAX, e^S_MAX], which stops single steps from blowing up early in training.
"""

from __future__ import annotations

import jax.numpy as jnp

S_MAX = 5.0


def n_params(**_) -> int:
    return 2


def _unpack(params):
    shift, s_raw = params[..., 0], params[..., 1]
    return shift, S_MAX * jnp.tanh(s_raw / S_MAX)


def forward(x, params):
    shift, s = _unpack(params)
    return x * jnp.exp(s) + shift, s


def inverse(y, params):
    shift, s = _unpack(params)
    return (y - shift) * jnp.exp(-s), s

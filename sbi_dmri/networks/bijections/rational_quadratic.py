"""Monotone rational-quadratic spline on [−B, B], identity outside (Durkan et al. 2019, "Neural
Spline Flows", NeurIPS; the rational-quadratic form of Gregory & Delbourgo 1982).

K bins; raw conditioner outputs per dimension: K width logits, K height logits, K − 1 interior
derivative pre-activations (boundary derivatives are 1, so the map is C¹ at ±B and the linear tails
are the identity). All-zero raw outputs give equal bins and unit derivatives: the identity map,
so a zero-initialised conditioner starts the flow at the identity.

Within bin k (knots x_k, y_k, width w, height h, slope s = h/w, end derivatives d_k, d_{k+1}) and
ξ = (x − x_k)/w:
    y = y_k + h [s ξ² + d_k ξ(1−ξ)] / [s + (d_{k+1} + d_k − 2s) ξ(1−ξ)]
    dy/dx = s² [d_{k+1} ξ² + 2s ξ(1−ξ) + d_k (1−ξ)²] / [s + (d_{k+1} + d_k − 2s) ξ(1−ξ)]²
The inverse solves the quadratic for ξ with the numerically stable root 2c / (−b − √(b² − 4ac)).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
# softplus(u + _SHIFT) = 1 at u = 0, so zero raw derivatives mean slope 1.
_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def n_params(*, n_bins: int) -> int:
    return 3 * n_bins - 1


def _knots(logits, bound):
    K = logits.shape[-1]
    frac = MIN_BIN + (1.0 - MIN_BIN * K) * jax.nn.softmax(logits, axis=-1)
    cum = jnp.concatenate([jnp.zeros_like(frac[..., :1]), jnp.cumsum(frac, axis=-1)], axis=-1)
    knots = -bound + 2.0 * bound * cum
    # pin the ends exactly (cumsum rounding)
    return knots.at[..., 0].set(-bound).at[..., -1].set(bound)


def _unpack(params, bound):
    K = (params.shape[-1] + 1) // 3
    xk = _knots(params[..., :K], bound)
    yk = _knots(params[..., K : 2 * K], bound)
    d_in = MIN_DERIVATIVE + jax.nn.softplus(params[..., 2 * K :] + _SHIFT)
    ones = jnp.ones_like(d_in[..., :1])
    d = jnp.concatenate([ones, d_in, ones], axis=-1)
    return xk, yk, d


def _gather(a, idx):
    return jnp.take_along_axis(a, idx[..., None], axis=-1)[..., 0]


def _bin_values(knots_for_search, v, xk, yk, d):
    K = xk.shape[-1] - 1
    idx = jnp.clip(jnp.sum(v[..., None] >= knots_for_search[..., 1:-1], axis=-1), 0, K - 1)
    x0, x1 = _gather(xk, idx), _gather(xk, idx + 1)
    y0, y1 = _gather(yk, idx), _gather(yk, idx + 1)
    d0, d1 = _gather(d, idx), _gather(d, idx + 1)
    return x0, x1 - x0, y0, y1 - y0, d0, d1


def forward(x, params, *, bound: float = 5.0):
    """Elementwise y = spline(x), log dy/dx. params (..., 3K − 1); x (...)."""
    xk, yk, d = _unpack(params, bound)
    inside = jnp.abs(x) < bound
    xc = jnp.clip(x, -bound, bound)
    x0, w, y0, h, d0, d1 = _bin_values(xk, xc, xk, yk, d)
    s = h / w
    xi = jnp.clip((xc - x0) / w, 0.0, 1.0)
    t = xi * (1.0 - xi)
    denom = s + (d1 + d0 - 2.0 * s) * t
    y = y0 + h * (s * xi * xi + d0 * t) / denom
    dydx = s * s * (d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) ** 2) / (denom * denom)
    return jnp.where(inside, y, x), jnp.where(inside, jnp.log(dydx), 0.0)


def inverse(y, params, *, bound: float = 5.0):
    """Elementwise x = spline⁻¹(y) and log dy/dx at x (the forward log-derivative)."""
    xk, yk, d = _unpack(params, bound)
    inside = jnp.abs(y) < bound
    yc = jnp.clip(y, -bound, bound)
    x0, w, y0, h, d0, d1 = _bin_values(yk, yc, xk, yk, d)
    s = h / w
    dy = yc - y0
    c2 = d1 + d0 - 2.0 * s
    a = h * (s - d0) + dy * c2
    b = h * d0 - dy * c2
    c = -s * dy
    disc = jnp.clip(b * b - 4.0 * a * c, 0.0, None)
    xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
    x = x0 + xi * w
    t = xi * (1.0 - xi)
    denom = s + c2 * t
    dydx = s * s * (d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) ** 2) / (denom * denom)
    return jnp.where(inside, x, y), jnp.where(inside, jnp.log(dydx), 0.0)

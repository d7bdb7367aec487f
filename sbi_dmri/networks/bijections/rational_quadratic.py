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
    """K bin logits (a list of arrays) → K + 1 increasing knots from −bound to bound (a list)."""
    K = len(logits)
    top = logits[0]
    for v in logits[1:]:
        top = jnp.maximum(top, v)
    e = [jnp.exp(v - top) for v in logits]
    total = e[0]
    for v in e[1:]:
        total = total + v
    scale = 2.0 * bound * (1.0 - MIN_BIN * K) / total
    knots = [jnp.full_like(top, -bound)]
    for k in range(K - 1):
        knots.append(knots[-1] + (2.0 * bound * MIN_BIN + scale * e[k]))
    knots.append(jnp.full_like(top, bound))  # the ends pinned exactly (no cumsum rounding)
    return knots


def _unpack(params, bound):
    # Bins are handled as Python lists of (...)-shaped arrays, unrolled over the K bins, rather than
    # as a trailing axis of length K: every operation is then elementwise over the batch and XLA fuses
    # the whole spline into one loop. Reductions and gathers over a short trailing axis are slow on CPU
    # (they dominated the flow's sampling time).
    K = (params.shape[-1] + 1) // 3
    cols = [params[..., i] for i in range(params.shape[-1])]
    xk = _knots(cols[:K], bound)
    yk = _knots(cols[K : 2 * K], bound)
    ones = jnp.ones_like(cols[0])
    d = [ones] + [MIN_DERIVATIVE + jax.nn.softplus(c + _SHIFT) for c in cols[2 * K :]] + [ones]
    return xk, yk, d


def _bin_values(knots_for_search, v, xk, yk, d):
    """Left knot, width, left height, height, end derivatives of the bin holding v (clipped to the range)."""
    K = len(xk) - 1
    x0, x1, y0, y1, d0, d1 = xk[0], xk[1], yk[0], yk[1], d[0], d[1]
    for k in range(1, K):  # the last interior knot ≤ v wins (knots increase)
        right = v >= knots_for_search[k]
        x0, x1 = jnp.where(right, xk[k], x0), jnp.where(right, xk[k + 1], x1)
        y0, y1 = jnp.where(right, yk[k], y0), jnp.where(right, yk[k + 1], y1)
        d0, d1 = jnp.where(right, d[k], d0), jnp.where(right, d[k + 1], d1)
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

"""Per-voxel trust from importance weights: the Pareto k̂ of PSIS, and the effective sample size.

With posterior draws θ_s ~ q(θ | x) from the network and the analytic likelihood, the importance
ratios w_s = p(x | θ_s) p(θ_s) / q(θ_s | x) (known up to a constant) measure how well q matches the
true posterior in that voxel. Their upper tail is close to a generalized Pareto distribution
(GPD) whose shape ξ = k̂ says how many moments the ratios have (1/k̂): k̂ < 0.5, finite variance,
importance sampling works; k̂ > 0.7, the estimates are unreliable and the voxel is flagged
(Vehtari, Simpson, Gelman, Yao & Gabry, "Pareto smoothed importance sampling", JMLR 25(72), 2024).
They refine the 0.7 cut to min(1 − 1/log₁₀ S, 0.7) for S draws (`khat_threshold`).

Tail (Vehtari et al. 2024, §3): the M = ⌈min(S/5, 3√S)⌉ largest ratios; exceedances over the
largest ratio outside the tail are fitted by a GPD.

GPD fit (Zhang & Stephens, Technometrics 51:316, 2009). Write the GPD as
f(y) = (θ/k)(1 − θy)^{1/k − 1}, k = −ξ, θ = −ξ/σ. For fixed θ the likelihood is maximised by
k(θ) = −mean log(1 − θ y), with profile log-likelihood ℓ(θ) = n [log(θ/k(θ)) + k(θ) − 1]. With the
sorted exceedances y₍₁₎ ≤ … ≤ y₍ₙ₎, a grid of m = 30 + ⌊√n⌋ values

    θ_j = 1/y₍ₙ₎ + (1 − √(m/(j − 1/2))) / (3 y₍⌊n/4 + 1/2⌋₎),   j = 1..m,

is averaged with weights ∝ exp ℓ(θ_j) (a posterior mean under their empirical prior):
θ̂ = Σ_j θ_j exp ℓ(θ_j) / Σ_j exp ℓ(θ_j), and ξ̂ = mean log(1 − θ̂ y). Finally, as in Vehtari et
al., ξ̂ is shrunk towards 0.5 by a weak prior worth 10 observations: k̂ = (n ξ̂ + 5)/(n + 10).
(m = 30 + ⌊√n⌋ follows Vehtari et al.; Zhang & Stephens use 20 + ⌊√n⌋.)

Bounded ratios (a proposal wider than the target) give k̂ < 0. If all tail ratios are equal there is
no tail at all and k̂ = −inf. If every ratio is zero (all log weights −inf) the proposal missed the
target completely and k̂ = +inf, which every threshold flags.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp


def khat_threshold(n_draws: int) -> float:
    """Sample-size-aware reliability threshold min(1 − 1/log₁₀ S, 0.7) (Vehtari et al. 2024)."""
    return float(min(1.0 - 1.0 / math.log10(n_draws), 0.7))


def _gpd_shape_zhang_stephens(y: np.ndarray) -> np.ndarray:
    """GPD shape ξ̂ for each row of exceedances y (V, n) sorted ascending, y ≥ 0, y[:, -1] > 0."""
    n = y.shape[1]
    m = 30 + int(math.sqrt(n))
    y_max = y[:, -1]
    y_quartile = y[:, int(n / 4 + 0.5) - 1]
    # ties at zero would put the quartile at 0; a tiny positive value keeps the grid finite
    y_quartile = np.maximum(y_quartile, 1e-12 * y_max)
    j = np.arange(1, m + 1)
    theta = 1.0 / y_max[:, None] + (1.0 - np.sqrt(m / (j - 0.5)))[None, :] / (3.0 * y_quartile[:, None])
    # k(θ) = −mean log(1 − θ y); θ ≤ 1/y_max keeps the argument ≥ 0 (= 0 only at j = m exactly)
    log_terms = np.log1p(-theta[:, :, None] * y[:, None, :])  # (V, m, n)
    k = -np.mean(log_terms, axis=2)
    profile = n * (np.log(theta / k) + k - 1.0)
    profile = np.where(np.isfinite(profile), profile, -np.inf)
    w = np.exp(profile - logsumexp(profile, axis=1, keepdims=True))
    theta_hat = np.sum(w * theta, axis=1)
    return np.mean(np.log1p(-theta_hat[:, None] * y), axis=1)


def pareto_khat(log_weights, *, chunk: int = 1024) -> np.ndarray:
    """PSIS Pareto k̂ per voxel, (n_voxels,), from log importance ratios (n_voxels, n_draws).

    Ratios need only be known up to a constant per voxel. Non-finite log weights of −inf (zero
    weight) are allowed; a voxel whose weights are all −inf gets k̂ = +inf (flagged); +inf or NaN raise. Processed in chunks of voxels to bound memory.
    """
    lw = np.atleast_2d(np.asarray(log_weights, np.float64))
    if np.any(np.isnan(lw)) or np.any(lw == np.inf):
        raise ValueError("log_weights must not contain NaN or +inf")
    n_draws = lw.shape[1]
    n_tail = int(math.ceil(min(0.2 * n_draws, 3.0 * math.sqrt(n_draws))))
    if n_tail < 5:
        raise ValueError(f"need at least 25 draws per voxel for a Pareto tail fit, got {n_draws}")
    out = np.empty(lw.shape[0])
    for start in range(0, lw.shape[0], chunk):
        block = lw[start : start + chunk]
        # every draw has zero weight (e.g. the likelihood underflows at all of them): the network's
        # posterior misses the target entirely. Worst case, k̂ = +inf, so the voxel is flagged.
        dead = np.all(block == -np.inf, axis=1)
        block = np.where(dead[:, None], 0.0, block)
        block = block - block.max(axis=1, keepdims=True)  # k̂ is scale-invariant; avoids overflow
        top = np.sort(block, axis=1)[:, -(n_tail + 1) :]  # threshold + tail, ascending
        w = np.exp(top)
        y = w[:, 1:] - w[:, :1]
        has_tail = y[:, -1] > 0
        k = np.full(block.shape[0], -np.inf)
        if np.any(has_tail):
            xi = _gpd_shape_zhang_stephens(y[has_tail])
            k[has_tail] = (n_tail * xi + 10 * 0.5) / (n_tail + 10)
        k[dead] = np.inf
        out[start : start + chunk] = k
    return out


def importance_ess(log_weights) -> np.ndarray:
    """Effective sample size (Σw)²/Σw² per voxel, (n_voxels,), from log weights (n_voxels, n_draws).

    0 for a voxel whose weights are all zero (all log weights −inf)."""
    lw = np.atleast_2d(np.asarray(log_weights, np.float64))
    dead = np.all(lw == -np.inf, axis=1)  # all weights zero: no effective draw at all
    lw = np.where(dead[:, None], 0.0, lw)
    return np.where(dead, 0.0, np.exp(2.0 * logsumexp(lw, axis=1) - logsumexp(2.0 * lw, axis=1)))

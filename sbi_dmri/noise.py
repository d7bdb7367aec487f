"""Measurement noise: Gaussian and Rician, with SNR = S0 / σ.

Signals inside the package are normalised (S0 = 1), so σ = 1 / SNR unless S0 is given.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import i0e

NoiseKind = Literal["gaussian", "rician"]
NOISE_KINDS = ("gaussian", "rician")


def sigma_from_snr(snr, s0=1.0):
    """σ = S0 / SNR (same unit as S0)."""
    return s0 / snr


def add_noise(key, signal, snr, kind: NoiseKind = "rician", s0=1.0):
    """Corrupt noise-free signals.

    Args:
        key: PRNG key.
        signal: noise-free signal (any shape), in the unit of S0 (normalised: S0 = 1).
        snr: S0/σ, scalar or broadcastable to `signal` (e.g. (n_voxels, 1) for one SNR per voxel).
        kind: "gaussian" (signal + σε) or "rician" (|signal + σ(ε₁ + iε₂)|, magnitude images).
        s0: the non-diffusion-weighted signal the SNR refers to.
    """
    sigma = sigma_from_snr(snr, s0)
    k1, k2 = jax.random.split(key)
    e1 = jax.random.normal(k1, jnp.shape(signal), dtype=jnp.result_type(signal, jnp.float32))
    if kind == "gaussian":
        return signal + sigma * e1
    if kind == "rician":
        e2 = jax.random.normal(k2, jnp.shape(signal), dtype=e1.dtype)
        return jnp.sqrt((signal + sigma * e1) ** 2 + (sigma * e2) ** 2)
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def gaussian_log_likelihood(y, mu, sigma):
    """Elementwise log N(y | mu, σ²)."""
    return -0.5 * ((y - mu) / sigma) ** 2 - jnp.log(sigma) - 0.5 * jnp.log(2.0 * jnp.pi)


def rician_log_likelihood(y, mu, sigma):
    """Elementwise log Rice(y | ν = mu, σ) = log(y/σ²) − (y² + ν²)/(2σ²) + log I₀(yν/σ²).

    Stable for large arguments: log I₀(x) = x + log i0e(x), so the exponentials never overflow, and
    −(y − ν)²/(2σ²) is formed directly instead of as a difference of large numbers. Defined for
    y > 0; y ≤ 0 (impossible for a magnitude) is given log-likelihood −inf.
    """
    mu = jnp.abs(mu)
    pos = y > 0
    y_s = jnp.where(pos, y, 1.0)
    x = y_s * mu / sigma**2
    ll = jnp.log(y_s) - 2.0 * jnp.log(sigma) - (y_s - mu) ** 2 / (2.0 * sigma**2) + jnp.log(i0e(x))
    return jnp.where(pos, ll, -jnp.inf)


def log_likelihood(y, mu, sigma, kind: NoiseKind = "gaussian"):
    """Sum over the last axis of the elementwise log-likelihood of `kind`."""
    if kind == "gaussian":
        return jnp.sum(gaussian_log_likelihood(y, mu, sigma), axis=-1)
    if kind == "rician":
        return jnp.sum(rician_log_likelihood(y, mu, sigma), axis=-1)
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def estimate_snr(signals, b0_mask, *, valid=None):
    """Per-voxel SNR = S0/σ from repeated b = 0 measurements, with one σ for the whole set of voxels.

    σ² is the median over voxels of each voxel's sample variance of its b = 0 signals, divided by the
    median of χ²_k/k (k = n_b0 − 1), which makes it unbiased for Gaussian noise (the median is robust to
    voxels with motion or partial volume; the noise level of a magnitude image is close to uniform over a
    volume while S0 varies, and a per-voxel estimate from a handful of b0s is too noisy: its relative
    error is ≈ 1/√(2(n_b0 − 1))).
    S0 is each voxel's mean b = 0 signal. At low SNR the Rician b0 mean is biased up by ≈ σ²/(2 S0) and
    the b0 spread narrowed, both within a few percent for SNR ≥ 5.

    Args:
        signals: (V, M) raw intensities or S/S0 (any scale: the SNR is scale-free).
        b0_mask: (M,) bool, the b = 0 measurements (at least 2 are needed).
        valid: (V,) bool, voxels to take σ from (default: all with finite signals and S0 > 0).
    Returns:
        (snr (V,), sigma): SNR per voxel (NaN where S0 ≤ 0 or not finite) and the common σ (signal units).
    """
    import numpy as np
    from scipy.stats import chi2

    s = np.asarray(signals, np.float64)
    b0 = np.asarray(b0_mask, bool)
    if int(b0.sum()) < 2:
        raise ValueError(f"estimating the SNR needs at least 2 b=0 measurements, the protocol has {int(b0.sum())}; "
                         "give the SNR explicitly")
    with np.errstate(invalid="ignore"):
        s0 = np.mean(s[:, b0], axis=1)
        var = np.var(s[:, b0], axis=1, ddof=1)
    ok = np.isfinite(s0) & (s0 > 0) & np.isfinite(var)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    if not np.any(ok):
        raise ValueError("no voxel with a finite, positive b=0 signal to estimate the noise level from")
    k = int(b0.sum()) - 1
    sigma = float(np.sqrt(np.median(var[ok]) * k / chi2.median(k)))
    if not sigma > 0:
        raise ValueError("the b=0 signals do not vary between repeats (σ = 0): give the SNR explicitly")
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(np.isfinite(s0) & (s0 > 0), s0 / sigma, np.nan)
    return snr, sigma

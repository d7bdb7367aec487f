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

"""Impermeable sphere of radius R: restricted in every direction (no orientation).

PGSE arguments: bvalues (n_meas,) ms/µm²; delta, Delta (n_meas,) ms; radius R µm; diffusivity D
µm²/ms. Rectangular PGSE: q² = b/(Δ − δ/3) rad²/µm², (γG)² = b/(δ²(Δ − δ/3)). Every 0/0 (q = 0,
qR at a root of j_n′) is removed with the double-where trick: values and gradients with respect to
R and D are finite everywhere, b = 0 included.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import gpd
from .cylinder import divided_derivative, near_root_tolerance, q_squared, safe_sqrt
from .special import SPHERE_ROOTS_NK, spherical_j1_over_x, spherical_jn_all, spherical_jn_prime_all


def _dtype(*xs):
    return jnp.result_type(float, *xs)


def soderman_sphere(qr):
    """Short pulse, Δ → ∞: E = [3j₁(qR)/(qR)]², zeros at qR = 4.4934, 7.7253, …"""
    return (3.0 * spherical_j1_over_x(qr)) ** 2


_BETA = np.asarray(SPHERE_ROOTS_NK, np.float64)
_N = np.arange(_BETA.shape[0], dtype=np.float64)[:, None]
_BETA_SAFE = np.where(_BETA > 0, _BETA, 1.0)
# 6(2n + 1) β²/(β² − n(n + 1)); the zero root (0, 0) carries 9 j₁(x)²/x² and is added separately.
_WEIGHT = np.where(
    _BETA > 0, 6.0 * (2.0 * _N + 1.0) * _BETA_SAFE**2 / (_BETA_SAFE**2 - _N * (_N + 1.0)), 0.0
)


def balinov_sphere(qr, diffusivity, Delta, radius):
    """Short-pulse, finite-Δ series for the sphere (Balinov et al., JMR A 104:17, 1993).

    E = [3j₁(x)/x]² + Σ_{(n,k)≠(0,0)} 6(2n+1) β²/(β² − n(n+1)) e^{−β²DΔ/R²} [x j_n′(x)]²/(x² − β²)²,
    x = qR, β = β_nk the roots of j_n′ (the zero root's prefactor is 9, not 6). Terms are positive,
    so truncation only lowers E. Truncation (n ≤ 20, 20 roots per order) at Δ = 0: 1 − 1.2e-4 at
    qR = 15, 1 − 5e-3 at qR = 20; damped by e^{−β²DΔ/R²} for Δ > 0. Regime: δ ≪ Δ, δ ≪ R²/D.

    Args:
        qr: qR (n_meas,), ≥ 0; diffusivity: µm²/ms; Delta: (n_meas,) ms; radius: µm.
    """
    dtype = _dtype(qr, diffusivity, radius)
    beta = jnp.asarray(_BETA, dtype)
    beta_safe = jnp.asarray(_BETA_SAFE, dtype)
    n = jnp.asarray(_N, dtype)
    nmax = _BETA.shape[0] - 1
    # j_n(β) gives j″(β) = −(1 − n(n+1)/β²) j(β) and j‴(β) = −(4j″ + 2j)/β from the ODE.
    j_all = spherical_jn_all(nmax, beta_safe)
    idx = np.arange(nmax + 1)
    j_root = j_all[idx[:, None], np.arange(_BETA.shape[1])[None, :], idx[:, None]]
    j2 = -(1.0 - n * (n + 1.0) / beta_safe**2) * j_root
    j3 = -(4.0 * j2 + 2.0 * j_root) / beta_safe
    jp = spherical_jn_prime_all(nmax, qr)  # (n_meas, 21)
    x = qr[:, None, None]
    h = x - beta[None]
    ratio = divided_derivative(jp[:, :, None], h, j2[None], j3[None], near_root_tolerance(dtype))
    decay = jnp.exp(-(beta[None] ** 2) * (diffusivity * Delta / radius**2)[:, None, None])
    terms = jnp.asarray(_WEIGHT, dtype)[None] * decay * (x / (x + beta_safe[None]) * ratio) ** 2
    return soderman_sphere(qr) + jnp.sum(terms, axis=(1, 2))


def _qr(bvalues, delta, Delta, radius):
    return safe_sqrt(q_squared(bvalues, delta, Delta)) * radius


def sphere_soderman(bvalues, delta, Delta, radius, diffusivity):
    """Short-pulse, long-time sphere: [3j₁(qR)/(qR)]² (Söderman & Jönsson, JMR A 117:94, 1995).

    Regime: δ ≪ R²/D ≪ Δ. `diffusivity` is unused (kept for a uniform signature).
    """
    del diffusivity
    return soderman_sphere(_qr(bvalues, delta, Delta, radius))


def sphere_callaghan(bvalues, delta, Delta, radius, diffusivity):
    """Short-pulse, finite-Δ sphere (Balinov et al. 1993); see `balinov_sphere` for the regime."""
    e = balinov_sphere(_qr(bvalues, delta, Delta, radius), diffusivity, Delta, radius)
    return jnp.clip(e, 0.0, 1.0)


def sphere_gpd(bvalues, delta, Delta, radius, diffusivity):
    """GPD sphere for rectangular PGSE (Murday & Cotts, J Chem Phys 48:4938, 1968).

    ln E = −γ²G² Σ_m B_m N_m/λ_m², 30 modes + 16 tail pseudo-modes (truncation ≤ 1.2e-7 in E).
    Regime: Gaussian phase, Dδ/R² ≳ 1. Against the matrix formalism (MISST; D = 2 µm²/ms,
    R = 5 µm, Δ = 40 ms, b ≤ 3): |ΔS| ≤ 7.4e-4 at δ = 30 ms; at δ = 1 ms the GPD reads high by
    +0.005 at b = 3 (narrow pulses: non-Gaussian phase), the scope boundary.
    """
    g2 = gpd.pgse_gamma_g_sq(bvalues, delta, Delta)
    return jnp.exp(gpd.pgse_log_signal(g2, delta, Delta, radius, diffusivity, gpd.SPHERE))


def sphere_neuman(bvalues, delta, Delta, radius, diffusivity):
    """Long-pulse asymptote (Neuman 1974): ln E = −(16/175)γ²G²δR⁴/D. Regime: Dδ/R² ≫ 1."""
    g2 = gpd.pgse_gamma_g_sq(bvalues, delta, Delta)
    return jnp.exp(-(16.0 / 175.0) * g2 * delta * radius**4 / diffusivity)


def sphere_gpd_waveform(gradients, dt: float, radius, diffusivity):
    """GPD sphere for any piecewise-constant effective waveform G(t) (all three components).

    Args:
        gradients: (n_meas, n_t, 3) mT/m; dt: ms (static); radius: µm; diffusivity: µm²/ms.
    Regime and scope boundary as `sphere_gpd`.
    """
    g = jnp.asarray(gradients, _dtype(gradients, radius, diffusivity))
    return jnp.exp(gpd.waveform_log_signal(g, dt, radius, diffusivity, gpd.SPHERE))

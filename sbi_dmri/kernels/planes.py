"""Two impermeable parallel planes at spacing L with unit normal n: restricted along n, free along
the planes, E = E_n(q|ĝ·n|, L, D) · exp(−b D (1 − (ĝ·n)²)).

PGSE arguments: bvalues (n_meas,) ms/µm²; directions (n_meas, 3) unit ĝ; delta, Delta (n_meas,) ms;
orientation (3,) unit normal n; spacing L µm; diffusivity D µm²/ms. q² = b/(Δ − δ/3) rad²/µm².
The short-pulse forms are written with sinc(u) = sin(u/2)/(u/2), which has no 0/0 at all.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import gpd
from .cylinder import axial_bvalue, q_squared, safe_sqrt

#: Terms n = 1..N of the Tanner–Stejskal series.
N_TANNER = 100


def _half_sinc(u):
    """sin(u/2)/(u/2), smooth and exact at u = 0 (jnp.sinc(t) = sin(πt)/(πt))."""
    return jnp.sinc(u / (2.0 * jnp.pi))


def _normal_q(bvalues, directions, delta, Delta, orientation):
    c = directions @ orientation
    return safe_sqrt(q_squared(bvalues, delta, Delta)) * jnp.abs(c), c


def _in_plane_free(bvalues, c, diffusivity):
    return jnp.exp(-bvalues * diffusivity * (1.0 - c**2))


def soderman_planes(ql):
    """Short pulse, Δ → ∞: 2(1 − cos qL)/(qL)² = [sin(qL/2)/(qL/2)]²."""
    return _half_sinc(ql) ** 2


def tanner_planes(ql, diffusivity, Delta, spacing):
    """Short-pulse, finite-Δ series (Tanner & Stejskal, J Chem Phys 49:1768, 1968).

    E = 2(1 − cos x)/x² + 4x² Σ_{n≥1} e^{−n²π²DΔ/L²} [1 − (−1)ⁿ cos x]/[x² − (nπ)²]², x = qL,
    written term by term as 2x²/(x + nπ)² · [sin(u/2)/(u/2)]², u = x − nπ (no removable
    singularity left). N = 100 terms: at Δ = 0 the sum is 1 − 8x²/(3π⁴N³) ≈ 1 − 7e-5 at x = 50.
    Regime: δ ≪ Δ, δ ≪ L²/D.

    Args:
        ql: q_n L (n_meas,), ≥ 0; diffusivity: µm²/ms; Delta: (n_meas,) ms; spacing: µm.
    """
    dtype = jnp.result_type(float, ql, diffusivity, spacing)
    npi = jnp.asarray(np.pi * np.arange(1, N_TANNER + 1), dtype)
    x = ql[:, None]
    decay = jnp.exp(-(npi[None, :] ** 2) * (diffusivity * Delta / spacing**2)[:, None])
    terms = decay * 2.0 * (x / (x + npi[None, :])) ** 2 * _half_sinc(x - npi[None, :]) ** 2
    return soderman_planes(ql) + jnp.sum(terms, axis=-1)


def planes_soderman(bvalues, directions, delta, Delta, orientation, spacing, diffusivity):
    """Short-pulse, long-time planes: 2(1 − cos qL)/(qL)² · in-plane free factor (Söderman 1995).

    Regime: δ ≪ L²/D ≪ Δ.
    """
    ql, c = _normal_q(bvalues, directions, delta, Delta, orientation)
    return soderman_planes(ql * spacing) * _in_plane_free(bvalues, c, diffusivity)


def planes_tanner(bvalues, directions, delta, Delta, orientation, spacing, diffusivity):
    """Short-pulse, finite-Δ planes (Tanner & Stejskal 1968) · in-plane free factor."""
    ql, c = _normal_q(bvalues, directions, delta, Delta, orientation)
    e = tanner_planes(ql * spacing, diffusivity, Delta, spacing)
    return jnp.clip(e, 0.0, 1.0) * _in_plane_free(bvalues, c, diffusivity)


def planes_gpd(bvalues, directions, delta, Delta, orientation, spacing, diffusivity):
    """GPD planes for rectangular PGSE: ln E_n = −γ²G_n² Σ_m B_m N_m/λ_m², α_m = mπ/L, m odd.

    30 modes + 16 tail pseudo-modes. Regime: Gaussian phase, Dδ/L² ≳ 1 (misses diffraction for
    narrow pulses, like the cylinder and sphere GPD).
    """
    c = directions @ orientation
    g2 = gpd.pgse_gamma_g_sq(bvalues, delta, Delta) * c**2
    log_n = gpd.pgse_log_signal(g2, delta, Delta, spacing, diffusivity, gpd.PLANES)
    return jnp.exp(log_n) * _in_plane_free(bvalues, c, diffusivity)


def planes_neuman(bvalues, directions, delta, Delta, orientation, spacing, diffusivity):
    """Long-pulse asymptote (Neuman 1974): ln E_n = −(1/60)γ²G_n²δL⁴/D. Regime: Dδ/L² ≫ 1."""
    c = directions @ orientation
    g2 = gpd.pgse_gamma_g_sq(bvalues, delta, Delta) * c**2
    return jnp.exp(-g2 * delta * spacing**4 / (60.0 * diffusivity)) * _in_plane_free(bvalues, c, diffusivity)


def planes_gpd_waveform(gradients, dt: float, orientation, spacing, diffusivity):
    """GPD planes for any piecewise-constant waveform: G·n through the plane modes, the in-plane
    components free, exp(−D (tr B − nᵀBn)).

    Args:
        gradients: (n_meas, n_t, 3) mT/m; dt: ms (static); orientation: (3,) unit normal;
        spacing: µm; diffusivity: µm²/ms.
    """
    g = jnp.asarray(gradients, jnp.result_type(float, gradients, spacing, diffusivity))
    g_n = (g @ orientation)[..., None]
    log_n = gpd.waveform_log_signal(g_n, dt, spacing, diffusivity, gpd.PLANES)
    g_in = g - g_n * orientation[None, None, :]
    b_in = sum(axial_bvalue(g_in, dt, e) for e in jnp.eye(3, dtype=g.dtype))
    return jnp.exp(log_n - diffusivity * b_in)


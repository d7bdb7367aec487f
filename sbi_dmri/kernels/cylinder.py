"""Impermeable cylinder of radius R along unit axis n: restricted across, free along.

Every kernel returns E = E⊥(q⊥, R, D) · exp(−b D (ĝ·n)²), the perpendicular factor seeing only the
gradient component across the axis, G⊥ = G sin θ (q⊥ = q sin θ, θ the angle between ĝ and n). The
closed forms differ only in E⊥ and in their regime of validity (stated per kernel). PGSE arguments:

    bvalues (n_meas,) ms/µm²; directions (n_meas, 3) unit ĝ; delta, Delta (n_meas,) ms;
    orientation (3,) unit axis n; radius R µm; diffusivity D µm²/ms.

Rectangular PGSE: q = γGδ, q² = b/(Δ − δ/3) rad²/µm²; (γG)² = b/(δ²(Δ − δ/3)).
Every 0/0 (q = 0, ĝ ∥ n, qR at a root of J_n') is removed with the double-where trick, so values and
gradients with respect to R and D are finite everywhere, b = 0 included.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..units import GAMMA
from . import gpd
from .special import CYLINDER_ROOTS_NK, bessel_jn_all, bessel_jn_prime_all, j1_over_x


def _dtype(*xs):
    return jnp.result_type(float, *xs)


def sin2_theta(directions, orientation):
    """sin²θ = 1 − (ĝ·n)², clipped to [0, 1] (n_meas,)."""
    c = directions @ orientation
    return jnp.clip(1.0 - c**2, 0.0, 1.0)


def safe_sqrt(x):
    """√x with a finite (zero) gradient at x = 0 (double where)."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def q_squared(bvalues, delta, Delta):
    """q² = (γGδ)² = b/(Δ − δ/3) in rad²/µm² for rectangular PGSE lobes."""
    return bvalues / (Delta - delta / 3.0)


def axial_free_factor(bvalues, directions, orientation, diffusivity):
    """exp(−b D (ĝ·n)²): free diffusion along the axis."""
    c = directions @ orientation
    return jnp.exp(-bvalues * diffusivity * c**2)


def divided_derivative(fprime_x, h, f2_root, f3_root, tol):
    """f′(x)/(x − β) where f′(β) = 0, h = x − β: direct away from β, Taylor f″(β) + f‴(β)h/2 near it.

    The Taylor branch is used for |h| < tol, where the direct ratio loses digits (f′ has an
    absolute error ~ε); tol ≈ (6ε)^{1/3} balances the two errors.
    """
    near = jnp.abs(h) < tol
    h_safe = jnp.where(near, 1.0, h)
    return jnp.where(near, f2_root + 0.5 * f3_root * h, fprime_x / h_safe)


def near_root_tolerance(dtype) -> float:
    return 2e-2 if jnp.dtype(dtype) == jnp.float32 else 1e-4


# ------------------------------------------------------------------------- perpendicular factors
def soderman_perpendicular(qr):
    """Short pulse, Δ → ∞: E⊥ = [2J₁(qR)/(qR)]², zeros at qR = 3.8317, 7.0156, …"""
    return (2.0 * j1_over_x(qr)) ** 2


# Callaghan's series uses every root β_nk of J_n' in the 21 × 20 table (n = 0..20, k = 0..19).
_BETA = np.asarray(CYLINDER_ROOTS_NK, np.float64)
_N = np.arange(_BETA.shape[0], dtype=np.float64)[:, None]
_BETA_SAFE = np.where(_BETA > 0, _BETA, 1.0)
# 4 ε_n β²/(β² − n²), ε_0 = 1, ε_n≥1 = 2; the zero root (n, k) = (0, 0) is added separately.
_WEIGHT = np.where(_BETA > 0, 4.0 * np.where(_N == 0, 1.0, 2.0) * _BETA_SAFE**2 / (_BETA_SAFE**2 - _N**2), 0.0)


def callaghan_perpendicular(qr, diffusivity, Delta, radius):
    """Short-pulse, finite-Δ series for the cylinder (Callaghan, JMR A 113:53, 1995).

    E⊥ = [2J₁(x)/x]² + Σ_{(n,k)≠(0,0)} 4ε_n β²/(β² − n²) e^{−β²DΔ/R²} [x J_n′(x)]²/(x² − β²)²,
    x = qR, β = β_nk the roots of J_n′ (ε_0 = 1, ε_n = 2). All terms are positive, so truncation
    only lowers E. Truncation (n ≤ 20, 20 roots per order) at Δ = 0, where it is worst: the sum is
    1 − 1e-4 at qR = 15 and 1 − 3e-3 at qR = 20; diffusion damps the missing terms by
    e^{−β²DΔ/R²} (β ≳ 60), so for DΔ/R² ≥ 0.01 the series is complete to < 1e-6 at any qR ≲ 20.
    Regime: δ ≪ Δ and δ ≪ R²/D (narrow pulses); Δ → ∞ gives Söderman's form.

    Args:
        qr: q⊥R (n_meas,), ≥ 0. diffusivity: µm²/ms. Delta: (n_meas,) ms. radius: µm.
    """
    dtype = _dtype(qr, diffusivity, radius)
    beta = jnp.asarray(_BETA, dtype)
    beta_safe = jnp.asarray(_BETA_SAFE, dtype)
    n = jnp.asarray(_N, dtype)
    nmax = _BETA.shape[0] - 1
    # J_n(β_nk) on the diagonal of the all-orders table gives J″(β) and J‴(β) from Bessel's ODE.
    j_all = bessel_jn_all(nmax, beta_safe)  # (21, 20, 21)
    idx = np.arange(nmax + 1)
    j_root = j_all[idx[:, None], np.arange(_BETA.shape[1])[None, :], idx[:, None]]
    j2 = -(1.0 - n**2 / beta_safe**2) * j_root
    j3 = -(3.0 * j2 + 2.0 * j_root) / beta_safe
    jp = bessel_jn_prime_all(nmax, qr)  # (n_meas, 21)
    x = qr[:, None, None]
    h = x - beta[None]
    ratio = divided_derivative(jp[:, :, None], h, j2[None], j3[None], near_root_tolerance(dtype))
    decay = jnp.exp(-(beta[None] ** 2) * (diffusivity * Delta / radius**2)[:, None, None])
    x_over_sum = x / (x + beta_safe[None])
    terms = jnp.asarray(_WEIGHT, dtype)[None] * decay * (x_over_sum * ratio) ** 2
    return soderman_perpendicular(qr) + jnp.sum(terms, axis=(1, 2))


# ---------------------------------------------------------------------------------- kernels
def _perpendicular_q(bvalues, directions, delta, Delta, orientation):
    return safe_sqrt(q_squared(bvalues, delta, Delta) * sin2_theta(directions, orientation))


def cylinder_soderman(bvalues, directions, delta, Delta, orientation, radius, diffusivity):
    """Short-pulse (δ → 0), long-time (Δ → ∞) cylinder: [2J₁(q⊥R)/(q⊥R)]² · exp(−bD(ĝ·n)²).

    Söderman & Jönsson, JMR A 117:94, 1995. Regime: δ ≪ R²/D ≪ Δ. See module doc for arguments.
    """
    qr = _perpendicular_q(bvalues, directions, delta, Delta, orientation) * radius
    return soderman_perpendicular(qr) * axial_free_factor(bvalues, directions, orientation, diffusivity)


def cylinder_callaghan(bvalues, directions, delta, Delta, orientation, radius, diffusivity):
    """Short-pulse, finite-Δ cylinder (Callaghan 1995) · exp(−bD(ĝ·n)²).

    Regime: δ ≪ Δ, δ ≪ R²/D; truncation as in `callaghan_perpendicular`. Module doc: arguments.
    """
    qr = _perpendicular_q(bvalues, directions, delta, Delta, orientation) * radius
    e_perp = callaghan_perpendicular(qr, diffusivity, Delta, radius)
    return jnp.clip(e_perp, 0.0, 1.0) * axial_free_factor(bvalues, directions, orientation, diffusivity)


def cylinder_gpd(bvalues, directions, delta, Delta, orientation, radius, diffusivity):
    """Gaussian phase distribution, rectangular PGSE (van Gelderen et al., JMR B 103:255, 1994).

    ln E⊥ = −γ²G⊥² Σ_m B_m N_m/λ_m² (see `gpd.pgse_mode_factor`), 30 modes + 16 tail pseudo-modes
    (truncation ≤ 1.2e-7 in E). Regime: any δ, Δ, exact when the phase is Gaussian, i.e. for
    Dδ/R² ≳ 1; the scope boundary is the narrow-pulse limit. Measured against the matrix formalism
    (MISST; D = 2 µm²/ms, R = 5 µm, Δ = 40 ms, b ≤ 3 ms/µm²): |ΔS| ≤ 1.5e-3 at δ = 30 ms, while at
    δ = 1 ms the GPD reads high by +0.011 at b = 3 (the phase of short pulses is not Gaussian:
    diffraction is missed). See module doc for arguments.
    """
    g2 = gpd.pgse_gamma_g_sq(bvalues, delta, Delta) * sin2_theta(directions, orientation)
    log_perp = gpd.pgse_log_signal(g2, delta, Delta, radius, diffusivity, gpd.CYLINDER)
    return jnp.exp(log_perp) * axial_free_factor(bvalues, directions, orientation, diffusivity)


def cylinder_neuman(bvalues, directions, delta, Delta, orientation, radius, diffusivity):
    """Long-pulse asymptote (Neuman, J Chem Phys 60:4508, 1974): ln E⊥ = −(7/48)γ²G⊥²δR⁴/D.

    Regime: Dδ/R² ≫ 1 (relative error of ln E⊥ ~ R²/(Dδ)); independent of Δ. Module doc: arguments.
    """
    g2 = gpd.pgse_gamma_g_sq(bvalues, delta, Delta) * sin2_theta(directions, orientation)
    log_perp = -(7.0 / 48.0) * g2 * delta * radius**4 / diffusivity
    return jnp.exp(log_perp) * axial_free_factor(bvalues, directions, orientation, diffusivity)


def axial_bvalue(gradients, dt: float, axis):
    """nᵀBn = ∫ q_n(t)² dt (ms/µm²) of the gradient component along unit `axis`, exact for
    piecewise-constant G: q linear on each interval.

    Args:
        gradients: (n_meas, n_t, 3) mT/m; dt: ms; axis: (3,) unit vector.
    """
    g_n = gradients @ axis  # (n_meas, n_t)
    q = GAMMA * dt * jnp.cumsum(g_n, axis=1)
    q = jnp.concatenate([jnp.zeros_like(q[:, :1]), q], axis=1)
    a, b = q[:, :-1], q[:, 1:]
    return dt * jnp.sum((a * a + a * b + b * b) / 3.0, axis=1)


def cylinder_gpd_waveform(gradients, dt: float, orientation, radius, diffusivity):
    """GPD cylinder for any piecewise-constant effective gradient waveform (Ianus et al. 2013).

    The component of G(t) across the axis, G⊥ = G − (G·n)n, dephases through the cylinder modes
    (`gpd.waveform_log_signal`, exact O(n_t) recursion per mode); along the axis diffusion is free:
    exp(−D nᵀBn). Equal to `cylinder_gpd` for rectangular lobes (to 1e-15 in float64). Regime and
    scope boundary as `cylinder_gpd` (Gaussian phase: fails for narrow lobes, δ ≪ R²/D).

    Args:
        gradients: (n_meas, n_t, 3) effective G(t), mT/m; dt: ms (static); orientation: (3,) unit
        axis; radius: µm; diffusivity: µm²/ms.
    """
    g = jnp.asarray(gradients, _dtype(gradients, radius, diffusivity))
    g_perp = g - (g @ orientation)[..., None] * orientation[None, None, :]
    log_perp = gpd.waveform_log_signal(g_perp, dt, radius, diffusivity, gpd.CYLINDER)
    return jnp.exp(log_perp - diffusivity * axial_bvalue(g, dt, orientation))

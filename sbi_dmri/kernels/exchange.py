"""Two-pool exchange (Kärger, Adv. Colloid Interface Sci. 23:129, 1985).

Two pools with fractions f₁, f₂ = 1 − f₁ exchange magnetisation at rates k₁₂ (pool 1 → 2) and
k₂₁ (2 → 1), 1/ms; detailed balance f₁k₁₂ = f₂k₂₁ keeps the fractions stationary. With narrow
pulses and diffusion time t (= Δ), the signal is

    E = 1ᵀ exp(−M) f,   M = [[x₁ + k₁₂t, −k₂₁t], [−k₁₂t, x₂ + k₂₁t]],

where x_i is pool i's own attenuation exponent over t: x_i = q²D_i t (= b D_i) for Gaussian pools,
or x_i = −ln E_i for a restricted pool (NEXI-style, Jelescu et al., NeuroImage 256:119277, 2022).

Regime: the Kärger picture is exact only for barrier-limited exchange between well-mixed pools:
κR/D ≪ 1 (the membrane, not diffusion inside the pore, limits exchange), narrow pulses δ ≪ Δ and
δ ≪ 1/k (no exchange during a pulse), and pools whose own signals decay independently of where a
spin started. Against Monte Carlo of permeable substrates it agrees to |ΔS| ≤ 0.03 where κ t/R ≲ 0.1
(PHYSICS.md); outside, the departure is physics, not a bug.

Units: rates in 1/ms, t in ms, q in rad/µm, D in µm²/ms, permeability κ in µm/ms, R in µm.

The 2×2 exponential is in closed form through its real eigenvalues λ± = s ± h (s = tr M/2,
h² = ((m₁₁ − m₂₂)/2)² + k₁₂k₂₁t² ≥ 0): exp(−M) = e^{−s}[cosh h I − (sinh h / h)(M − sI)]. The small
eigenvalue is computed as det M/(s + h) (no cancellation, det M = x₁x₂ + x₁k₂₁t + x₂k₁₂t ≥ 0), and
sinh h/h by its series when h → 0 (coinciding dephasing rates and no exchange), with double wheres
so that gradients stay finite there.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

Measurements = Float[Array, " n_meas"]

# Below h² = 1e-2 the series of cosh h and sinh h/h to h⁶ are exact to 3e-13 (relative).
_SMALL_H2 = 1e-2

#: Surface-to-volume ratio S/V divided by 1/R (cylinder 2/R, sphere 3/R; planes: R is the
#: half-spacing L/2, S/V = 1/R).
SURFACE_TO_VOLUME = {"cylinder": 2.0, "sphere": 3.0, "planes": 1.0}


def karger(x_1, x_2, f_1, k_12, k_21, t) -> Measurements:
    """E = 1ᵀ exp(−M) (f₁, 1 − f₁) for the two-pool Kärger matrix M (module docstring).

    Args:
        x_1, x_2: each pool's attenuation exponent without exchange (dimensionless, ≥ 0), e.g.
            b D_i, or −ln E_i of a restricted kernel; arrays of shape (n_meas,) or scalars.
        f_1: fraction of pool 1 (pool 2 has 1 − f_1).
        k_12, k_21: exchange rates 1 → 2 and 2 → 1, 1/ms (see `rates_from_exchange_time`).
        t: diffusion time (Δ in the narrow-pulse picture), ms.
    """
    f_2 = 1.0 - f_1
    a_12, a_21 = k_12 * t, k_21 * t
    m_11, m_22 = x_1 + a_12, x_2 + a_21
    s = 0.5 * (m_11 + m_22)
    d = 0.5 * (m_11 - m_22)
    h2 = d * d + a_12 * a_21
    small = h2 < _SMALL_H2
    h = jnp.sqrt(jnp.where(small, 1.0, h2))
    det = x_1 * x_2 + x_1 * a_21 + x_2 * a_12
    lam_lo = det / (s + jnp.where(small, 1.0, h))  # only used where h is not small
    lam_hi = s + h
    e_lo, e_hi = jnp.exp(-lam_lo), jnp.exp(-lam_hi)
    # C = e^{−s} cosh h and S = e^{−s} sinh h / h.
    e_s = jnp.exp(-s)
    cosh_series = 1.0 + h2 * (1.0 / 2.0 + h2 * (1.0 / 24.0 + h2 / 720.0))
    sinhc_series = 1.0 + h2 * (1.0 / 6.0 + h2 * (1.0 / 120.0 + h2 / 5040.0))
    cosh_term = jnp.where(small, e_s * cosh_series, 0.5 * (e_lo + e_hi))
    sinhc_term = jnp.where(small, e_s * sinhc_series, (e_lo - e_hi) / (2.0 * h))
    # 1ᵀ (M − sI) f with M − sI = [[d, −a₂₁], [−a₁₂, −d]].
    c = (d - a_12) * f_1 + (-a_21 - d) * f_2
    return (f_1 + f_2) * cosh_term - c * sinhc_term


def karger_pgse(q, t, d_1, d_2, f_1, k_12, k_21) -> Measurements:
    """Kärger signal of two Gaussian pools, narrow pulses: x_i = q² D_i t.

    Args:
        q: wave number γGδ, rad/µm, (n_meas,). t: diffusion time Δ, ms.
        d_1, d_2: diffusivities, µm²/ms. f_1: fraction of pool 1. k_12, k_21: rates, 1/ms.
    """
    qq = q * q * t
    return karger(qq * d_1, qq * d_2, f_1, k_12, k_21, t)


def rates_from_exchange_time(f_1, t_ex):
    """(k₁₂, k₂₁) = ((1 − f₁)/t_ex, f₁/t_ex): detailed balance with 1/t_ex = k₁₂ + k₂₁ (NEXI's t_ex).

    Args:
        f_1: fraction of pool 1. t_ex: exchange time, ms.
    """
    return (1.0 - f_1) / t_ex, f_1 / t_ex


def rates_from_permeability(permeability, radius, f_in, geometry: str = "cylinder"):
    """Barrier-limited rates: k_in→out = κ S/V (2κ/R cylinder, 3κ/R sphere, 2κ/L planes with
    R = L/2), and k_out→in = f_in k_in→out / (1 − f_in) by detailed balance (0 when f_in = 1).

    Args:
        permeability: membrane permeability κ, µm/ms. radius: R, µm. f_in: intracellular fraction.
        geometry: "cylinder", "sphere" or "planes".

    Returns:
        (k_in_out, k_out_in), 1/ms. Valid when κR/D ≪ 1 (see module docstring).
    """
    k_in_out = SURFACE_TO_VOLUME[geometry] * permeability / radius
    f_out = 1.0 - f_in
    has_out = f_out > 0
    k_out_in = jnp.where(has_out, f_in * k_in_out / jnp.where(has_out, f_out, 1.0), 0.0)
    return k_in_out, k_out_in


# Gauss–Legendre nodes on ξ = cos(ĝ, n) ∈ [0, 1] for the powder average of a stick-like pool; the
# integrand is entire in ξ and 32 nodes are exact to < 1e-10 for b·D ≤ 30 (cf. gaussian.py).
_XI, _XI_W = np.polynomial.legendre.leggauss(32)
_XI = 0.5 * (_XI + 1.0)
_XI_W = 0.5 * _XI_W


def karger_powder_stick(bvalues: Measurements, t, d_i, d_e, f, k_ie, k_ei) -> Measurements:
    """Powder-averaged Kärger exchange between sticks (pool 1) and an isotropic Gaussian pool (NEXI).

    E(b, t) = ∫₀¹ dξ 1ᵀ exp(−M(ξ)) f with x₁ = b d_i ξ², x₂ = b d_e (Jelescu et al., NeuroImage
    256:119277, 2022), ξ the cosine between ĝ and a neurite, by Gauss–Legendre quadrature.

    Args:
        bvalues: b-values, ms/µm² (x = b D, so free diffusion is exact for any pulse width).
        t: diffusion time Δ, ms (scalar or (n_meas,)). d_i, d_e: intra/extra diffusivities, µm²/ms.
        f: neurite fraction. k_ie, k_ei: rates neurite → extra and extra → neurite, 1/ms.
    """
    bvalues = jnp.asarray(bvalues)
    xi2 = jnp.asarray(_XI**2, dtype=jnp.result_type(bvalues, float))
    w = jnp.asarray(_XI_W, dtype=xi2.dtype)
    b = bvalues[:, None]
    t_b = jnp.asarray(t)[..., None] if jnp.ndim(t) else t
    e = karger(b * d_i * xi2[None, :], b * d_e * jnp.ones_like(xi2)[None, :], f, k_ie, k_ei, t_b)
    return e @ w

"""Gaussian phase distribution (GPD) machinery shared by the cylinder, sphere and planes kernels.

In a closed pore the position autocorrelation along a gradient axis is a sum of decaying modes,
⟨x(t₁)x(t₂)⟩ = Σ_m B_m exp(−λ_m|t₁ − t₂|), λ_m = D α_m², and under the Gaussian phase
approximation (Stepišnik 1993; Ianus et al., JMR 227:25, 2013)

    ln E = −(γ²/2) Σ_m B_m ∫∫ G(t₁)·G(t₂) exp(−λ_m|t₁ − t₂|) dt₁ dt₂.

Each geometry is a `ModeTable` of dimensionless roots x_m and weights c_m, with α_m = x_m/a and
B_m = c_m a² for the pore size a (radius R, or plane spacing L):

| geometry | x_m                     | c_m                 | Σ c_m |
|----------|-------------------------|---------------------|-------|
| cylinder | J₁′(x_m) = 0            | 2/[x_m²(x_m² − 1)]  | 1/4   |
| sphere   | j₁′(x_m) = 0            | 2/[x_m²(x_m² − 2)]  | 1/5   |
| planes   | mπ, m odd               | 8/(mπ)⁴             | 1/12  |

Mode truncation. Where the pore is large against the diffusion length (R² ≫ DΔ) the terms decay
only like 1/x_m² (they carry the free-diffusion sum rule Σ c_m x_m² = 1), so a plain truncation at
50 modes leaves an error up to 2e-5 in E (R = 20 µm, D = 0.1 µm²/ms, δ = Δ = 1 ms, b = 10). The
tail m > M is therefore replaced by its Euler–Maclaurin integral over the asymptotically evenly
spaced roots (spacing Δx = π, 2π for planes; c_m ≈ κ/x_m⁴ with κ = 2, 8), mapped to s = x_a/x ∈
(0, 1] and integrated by 16-point Gauss–Legendre: 16 pseudo-modes x_j = x_a/s_j with weights
c_j = κ w_j s_j² / (Δx x_a³), x_a = x_M + Δx/2. With M = 30 real modes + 16 pseudo-modes the
truncation error, measured against 3000-mode sums over R ∈ [0.1, 20] µm, D ∈ [0.1, 3.5] µm²/ms,
δ ∈ [1, 40] ms, Δ ∈ [δ, 100] ms, b ≤ 10 ms/µm², is ≤ 1.2e-7 in E and ≤ 3.3e-7 relative in ln E
(`tests/kernels/test_gpd.py` checks < 1e-6). The pseudo-modes are ordinary modes for every
formula below, so the PGSE closed form and the general-waveform recursion share them.

Units: lengths µm, times ms, D µm²/ms, G mT/m, γ = `sbi_dmri.units.GAMMA`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..units import GAMMA
from .special import CYLINDER_ROOTS, SPHERE_ROOTS

#: Real modes kept per geometry, and Gauss–Legendre pseudo-modes for the tail (see module doc).
N_MODES = 30
N_TAIL = 16


@dataclasses.dataclass(frozen=True)
class ModeTable:
    """Dimensionless GPD modes of one geometry: α_m = x[m]/a, B_m = c[m]·a² for pore size a (µm)."""

    name: str
    x: np.ndarray
    c: np.ndarray

    def lambdas_weights(self, size, diffusivity):
        """(λ_m (…, M) in 1/ms, B_m (…, M) in µm²) for pore size `size` (µm) and D (µm²/ms)."""
        dtype = jnp.result_type(float, size, diffusivity)
        x = jnp.asarray(self.x, dtype)
        c = jnp.asarray(self.c, dtype)
        size = jnp.asarray(size, dtype)[..., None]
        diffusivity = jnp.asarray(diffusivity, dtype)[..., None]
        lam = diffusivity * (x / size) ** 2
        return lam, c * size**2


def _with_tail(x: np.ndarray, c: np.ndarray, spacing: float, kappa: float, n_tail: int) -> tuple[np.ndarray, np.ndarray]:
    """Append Gauss–Legendre pseudo-modes for Σ_{m>M} (tail integral, see module docstring)."""
    s, w = np.polynomial.legendre.leggauss(n_tail)
    s, w = 0.5 * (s + 1.0), 0.5 * w
    x_a = x[-1] + 0.5 * spacing
    x_tail = x_a / s
    c_tail = kappa * w * s**2 / (spacing * x_a**3)
    return np.concatenate([x, x_tail]), np.concatenate([c, c_tail])


def _cylinder_table() -> ModeTable:
    x = np.asarray(CYLINDER_ROOTS[:N_MODES], np.float64)
    c = 2.0 / (x**2 * (x**2 - 1.0))
    return ModeTable("cylinder", *_with_tail(x, c, np.pi, 2.0, N_TAIL))


def _sphere_table() -> ModeTable:
    x = np.asarray(SPHERE_ROOTS[:N_MODES], np.float64)
    c = 2.0 / (x**2 * (x**2 - 2.0))
    return ModeTable("sphere", *_with_tail(x, c, np.pi, 2.0, N_TAIL))


def _planes_table() -> ModeTable:
    m = 2.0 * np.arange(N_MODES) + 1.0
    x = m * np.pi
    c = 8.0 / x**4
    return ModeTable("planes", *_with_tail(x, c, 2.0 * np.pi, 8.0, N_TAIL))


CYLINDER = _cylinder_table()
SPHERE = _sphere_table()
PLANES = _planes_table()


# ----------------------------------------------------------------------------------- PGSE
def _sinhc(y):
    """sinh(y)/y for 0 ≤ y ≤ 0.5 (Taylor, error < 1e-16)."""
    y2 = y * y
    return 1.0 + y2 * (1 / 6 + y2 * (1 / 120 + y2 * (1 / 5040 + y2 * (1 / 362880 + y2 / 39916800.0))))


def _sinh_minus_x_over_x3(y):
    """(sinh y − y)/y³ for 0 ≤ y ≤ 1 (Taylor, error < 1e-16)."""
    y2 = y * y
    return 1 / 6 + y2 * (1 / 120 + y2 * (1 / 5040 + y2 * (1 / 362880 + y2 * (1 / 39916800 + y2 / 6227020800.0))))


def pgse_mode_factor(lam, delta, Delta):
    """F(λ) = N(λ)/λ² in ms² for rectangular PGSE lobes (van Gelderen 1994; Murday & Cotts 1968).

    N = 2λδ − 2 + 2e^{−λδ} + 2e^{−λΔ} − e^{−λ(Δ−δ)} − e^{−λ(Δ+δ)}. For u = λδ < 1 the closed form
    cancels (N ~ λ³δ²(Δ − δ/3)), so it is rewritten exactly as
    N = 4(1 − e^{−λΔ}) sinh²(u/2) − 2(sinh u − u), i.e. F = δ²[(1 − e^{−λΔ}) shc(u/2)² − 2u s₃(u)]
    with shc(y) = sinh y / y and s₃(y) = (sinh y − y)/y³ by Taylor series; both terms are positive
    and the second is at most 2/3 of the first (Δ ≥ δ), so at most 2 bits are lost. For u ≥ 1 the
    closed form is used, divided by λ twice so that nothing overflows for λ up to 1e30.

    Args:
        lam: λ = Dα², 1/ms, > 0.
        delta, Delta: δ ≤ Δ, ms (broadcast against `lam`).
    """
    u = lam * delta
    small = u < 1.0
    # Double where: each branch only ever sees arguments inside its own domain.
    lam_s = jnp.where(small, lam, 1.0 / delta)
    u_s = lam_s * delta
    v_s = lam_s * Delta
    f_small = delta**2 * (-jnp.expm1(-v_s) * _sinhc(0.5 * u_s) ** 2 - 2.0 * u_s * _sinh_minus_x_over_x3(u_s))
    lam_l = jnp.where(small, 1.0 / delta, lam)
    u_l = lam_l * delta
    v_l = lam_l * Delta
    # λ(Δ − δ), not v − u: with λ ~ 1e11 a fused multiply-add would leave a rounding residue of
    # ~1e5 in v − u when Δ = δ, and e^{−(v−u)} would overflow.
    gap = jnp.maximum(lam_l * (Delta - delta), 0.0)
    rest = -2.0 + 2.0 * jnp.exp(-u_l) + 2.0 * jnp.exp(-v_l) - jnp.exp(-gap) - jnp.exp(-(v_l + u_l))
    inv = 1.0 / lam_l
    f_large = (2.0 * delta + rest * inv) * inv
    return jnp.where(small, f_small, f_large)


def pgse_log_signal(gamma_g_sq, delta, Delta, size, diffusivity, table: ModeTable):
    """GPD ln E ≤ 0 for rectangular PGSE along one restricted axis: −γ²G² Σ_m B_m N_m/λ_m².

    Args:
        gamma_g_sq: (γG)² of the restricted gradient component, (n_meas,), 1/(ms² µm²);
            for PGSE γ²G² = b/(δ²(Δ − δ/3)).
        delta, Delta: (n_meas,) ms.
        size: pore radius (or plane spacing) in µm, scalar.
        diffusivity: µm²/ms, scalar.
        table: `CYLINDER`, `SPHERE` or `PLANES`.
    """
    lam, B = table.lambdas_weights(size, diffusivity)  # (M,)
    F = pgse_mode_factor(lam[None, :], delta[:, None], Delta[:, None])  # (n, M)
    total = jnp.sum(B[None, :] * F, axis=-1)
    return jnp.minimum(-gamma_g_sq * total, 0.0)


def pgse_gamma_g_sq(bvalues, delta, Delta):
    """(γG)² = b / (δ²(Δ − δ/3)) in 1/(ms² µm²) for rectangular PGSE lobes (b ms/µm², δ, Δ ms)."""
    return bvalues / (delta**2 * (Delta - delta / 3.0))


# ------------------------------------------------------------------------ general waveform
def _self_factor(y):
    """p(y) = 2(e^{−y} − 1 + y)/y², the same-interval integral over h², for y = λh ≥ 0."""
    small = y < 0.1
    ys = jnp.where(small, y, 1.0)
    series = 1.0 + ys * (-1 / 3 + ys * (1 / 12 + ys * (-1 / 60 + ys * (1 / 360 + ys * (-1 / 2520 + ys / 20160)))))
    yl = jnp.where(small, 1.0, y)
    closed = 2.0 * (jnp.expm1(-yl) + yl) / yl**2
    return jnp.where(small, series, closed)


def _one_minus_exp_over_y(y):
    """(1 − e^{−y})/y for y ≥ 0 (1 at y = 0)."""
    small = y < 1e-3
    ys = jnp.where(small, y, 1.0)
    yl = jnp.where(small, 1.0, y)
    return jnp.where(small, 1.0 - ys / 2.0 + ys**2 / 6.0, -jnp.expm1(-yl) / yl)


def waveform_double_integrals(gradients, dt: float, lam):
    """I_m = Σ_c ∫∫ G_c(t₁) G_c(t₂) exp(−λ_m|t₁ − t₂|) dt₁ dt₂, exact for piecewise-constant G.

    With G = g_k on [k h, (k+1) h) (h = dt), y = λh, a = e^{−y}:
    - same interval: ∫∫ e^{−λ|t₁−t₂|} = h² p(y), p(y) = 2(e^{−y} − 1 + y)/y²;
    - intervals j < k: e^{−λ(k−j−1)h} w², w = (1 − a)/λ = h (1 − e^{−y})/y;
    so I = h² p(y) Σ_k g_k² + 2w² Σ_k g_k S_k with the exponentially decayed running sum
    S_0 = 0, S_{k+1} = a S_k + g_k: one `lax.scan` over time, O(n_t) per mode.

    Args:
        gradients: (n_meas, n_t, C) mT/m, the C gradient components that see the restriction.
        dt: interval length h, ms (static).
        lam: (M,) mode rates, 1/ms.

    Returns:
        (n_meas, M) in (mT/m)²·ms².
    """
    dtype = jnp.result_type(float, gradients, lam)
    g = jnp.asarray(gradients, dtype)
    y = lam * dt  # (M,)
    a = jnp.exp(-y)
    w = dt * _one_minus_exp_over_y(y)
    self_sum = jnp.sum(g**2, axis=(1, 2))  # (n,)
    g_t = jnp.moveaxis(g, 1, 0)  # (n_t, n, C)

    def step(carry, g_k):
        s, acc = carry  # s: (n, M, C) decayed running sum; acc: (n, M)
        acc = acc + jnp.sum(g_k[:, None, :] * s, axis=-1)
        s = a[None, :, None] * s + g_k[:, None, :]
        return (s, acc), None

    n, _, C = g.shape
    M = lam.shape[0]
    init = (jnp.zeros((n, M, C), dtype), jnp.zeros((n, M), dtype))
    (_, cross), _ = jax.lax.scan(step, init, g_t)
    return dt**2 * _self_factor(y)[None, :] * self_sum[:, None] + 2.0 * (w**2)[None, :] * cross


def waveform_log_signal(gradients, dt: float, size, diffusivity, table: ModeTable):
    """GPD ln E ≤ 0 for any piecewise-constant waveform: −(γ²/2) Σ_m B_m I_m.

    Args:
        gradients: (n_meas, n_t, C) effective gradient components in the restricted directions,
            mT/m (C = 3 ambient components of the projection is fine: the sum over components is
            basis independent).
        dt: sampling interval, ms (static).
        size: radius or spacing, µm; diffusivity: µm²/ms.
        table: `CYLINDER`, `SPHERE` or `PLANES`.
    """
    lam, B = table.lambdas_weights(size, diffusivity)
    I = waveform_double_integrals(gradients, dt, lam)
    return jnp.minimum(-0.5 * GAMMA**2 * jnp.sum(B[None, :] * I, axis=-1), 0.0)


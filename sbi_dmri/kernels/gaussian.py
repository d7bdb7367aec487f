"""Gaussian compartments: exact for Gaussian (free or hindered) diffusion.

Every kernel is a pure function of one voxel's parameters and the per-measurement b-values
(ms/µm²) and unit gradient directions ĝ (n_meas, 3); it returns E = S/S0 of shape (n_meas,).
No `jit` inside: compilation happens at the public entry points.

Linear encoding is assumed (b-tensor b ĝĝᵀ), which holds for PGSE and for any waveform whose
gradient keeps one axis (e.g. cosine OGSE along ĝ). Diffusivities are in µm²/ms.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from jaxtyping import Array, Float

Vector = Float[Array, "3"]
Measurements = Float[Array, " n_meas"]
Directions = Float[Array, "n_meas 3"]

# Below this value of x = √(b·d) the closed form √π erf(x)/(2x) loses digits to cancellation, so
# its Taylor series is used instead (error < 1e-14 at the switch).
_SERIES_SWITCH = 1e-2

# Gauss–Legendre nodes on [0, 1] for ∫₀¹ exp(a t²) dt with a ≥ 0 (zeppelin spherical mean when
# d_perp > d_par); 24 nodes are exact to < 1e-12 for a ≤ 20.
_GL_T, _GL_W = np.polynomial.legendre.leggauss(24)
_GL_T = 0.5 * (_GL_T + 1.0)
_GL_W = 0.5 * _GL_W


def cos_angle(directions: Directions, orientation: Vector) -> Measurements:
    """ĝ · n for each measurement."""
    return directions @ orientation


def ball(bvalues: Measurements, d_iso) -> Measurements:
    """Isotropic free diffusion: E = exp(−b d_iso).

    Args:
        bvalues: b-values, ms/µm².
        d_iso: diffusivity, µm²/ms.
    """
    return jnp.exp(-bvalues * d_iso)


def stick(bvalues: Measurements, directions: Directions, orientation: Vector, d_par) -> Measurements:
    """Zero-radius cylinder along unit `orientation`: E = exp(−b d_par (ĝ·n)²).

    Args:
        bvalues: b-values, ms/µm².
        directions: unit gradient directions ĝ, (n_meas, 3).
        orientation: unit axis n, (3,).
        d_par: diffusivity along the axis, µm²/ms.
    """
    c = cos_angle(directions, orientation)
    return jnp.exp(-bvalues * d_par * c**2)


def zeppelin(bvalues: Measurements, directions: Directions, orientation: Vector, d_par, d_perp) -> Measurements:
    """Axially symmetric tensor: E = exp(−b [d_perp + (d_par − d_perp)(ĝ·n)²]).

    Args:
        bvalues: b-values, ms/µm².
        directions: unit gradient directions ĝ, (n_meas, 3).
        orientation: unit symmetry axis n, (3,).
        d_par: diffusivity along n, µm²/ms.
        d_perp: diffusivity perpendicular to n, µm²/ms.
    """
    c = cos_angle(directions, orientation)
    return jnp.exp(-bvalues * (d_perp + (d_par - d_perp) * c**2))


def tensor_frame(orientation: Vector, psi) -> Float[Array, "3 3"]:
    """Orthonormal frame (rows e₁, e₂, e₃) with e₁ ∥ `orientation` and e₂ rotated by `psi` (rad).

    e₂ = cos ψ e_θ + sin ψ e_φ, the spherical-coordinate unit vectors of the axis. The axis is first
    flipped into the upper hemisphere so that the frame (and the tensor) is the same for n and −n.
    """
    # One representative per axis: n_z > 0, ties on the equator broken by n_y, then n_x.
    x, y, z = orientation[0], orientation[1], orientation[2]
    flip = (z < 0) | ((z == 0) & ((y < 0) | ((y == 0) & (x < 0))))
    n = jnp.where(flip, -orientation, orientation)
    rho = jnp.sqrt(n[0] ** 2 + n[1] ** 2)
    # At the pole the azimuth is undefined: any (cos φ, sin φ) gives a valid frame; pick φ = 0.
    safe = rho > 1e-12
    rho_s = jnp.where(safe, rho, 1.0)
    cphi = jnp.where(safe, n[0] / rho_s, 1.0)
    sphi = jnp.where(safe, n[1] / rho_s, 0.0)
    e_theta = jnp.stack([n[2] * cphi, n[2] * sphi, -rho])
    e_phi = jnp.stack([-sphi, cphi, jnp.zeros_like(cphi)])
    e2 = jnp.cos(psi) * e_theta + jnp.sin(psi) * e_phi
    e3 = jnp.cross(n, e2)
    return jnp.stack([n, e2, e3])


def tensor(
    bvalues: Measurements, directions: Directions, orientation: Vector, psi, lambda_1, lambda_2, lambda_3
) -> Measurements:
    """Full diffusion tensor: E = exp(−b ĝᵀDĝ), D = Σ λ_i e_i e_iᵀ with the frame of `tensor_frame`.

    Args:
        bvalues: b-values, ms/µm².
        directions: unit gradient directions ĝ, (n_meas, 3).
        orientation: unit axis e₁ of eigenvalue `lambda_1`, (3,).
        psi: rotation (rad) of e₂ about e₁.
        lambda_1, lambda_2, lambda_3: eigenvalues along e₁, e₂, e₃, µm²/ms.
    """
    frame = tensor_frame(orientation, psi)
    proj = directions @ frame.T  # (n_meas, 3): ĝ·e_i
    adc = lambda_1 * proj[:, 0] ** 2 + lambda_2 * proj[:, 1] ** 2 + lambda_3 * proj[:, 2] ** 2
    return jnp.exp(-bvalues * adc)


def _erf_ratio(y):
    """F(y) = ∫₀¹ exp(−y t²) dt = √π erf(√y) / (2√y) for y ≥ 0, finite (→ 1) with finite gradient at 0."""
    y_c = jnp.maximum(y, 0.0)
    small = y_c < _SERIES_SWITCH**2
    # Double where: the unused branch must also be finite, or its NaN gradient leaks through.
    x_safe = jnp.sqrt(jnp.where(small, 1.0, y_c))
    closed = jnp.sqrt(jnp.pi) * erf(x_safe) / (2.0 * x_safe)
    series = 1.0 - y_c / 3.0 + y_c**2 / 10.0 - y_c**3 / 42.0
    return jnp.where(small, series, closed)


def _exp_integral_negative(y):
    """F(y) = ∫₀¹ exp(−y t²) dt for y ≤ 0 by Gauss–Legendre quadrature (no erfi in JAX)."""
    t2 = jnp.asarray(_GL_T**2, dtype=jnp.result_type(y, jnp.float32))
    w = jnp.asarray(_GL_W, dtype=t2.dtype)
    return jnp.sum(w[None, :] * jnp.exp(-y.reshape(-1, 1) * t2[None, :]), axis=-1).reshape(jnp.shape(y))


def stick_spherical_mean(bvalues: Measurements, d_par) -> Measurements:
    """Orientation average of the stick: √π erf(√(b d_par)) / (2√(b d_par)); 1 at b = 0.

    Args:
        bvalues: b-values, ms/µm².
        d_par: diffusivity along the stick, µm²/ms.
    """
    return _erf_ratio(bvalues * d_par)


def zeppelin_spherical_mean(bvalues: Measurements, d_par, d_perp) -> Measurements:
    """Orientation average of the zeppelin: exp(−b d_perp) F(b (d_par − d_perp)), F as in the stick.

    Valid for either sign of d_par − d_perp (d_perp > d_par uses quadrature of the same integral).

    Args:
        bvalues: b-values, ms/µm².
        d_par: diffusivity along the axis, µm²/ms.
        d_perp: perpendicular diffusivity, µm²/ms.
    """
    y = bvalues * (d_par - d_perp)
    neg = y < 0
    f = jnp.where(neg, _exp_integral_negative(jnp.minimum(y, 0.0)), _erf_ratio(jnp.maximum(y, 0.0)))
    return jnp.exp(-bvalues * d_perp) * f

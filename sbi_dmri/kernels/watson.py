"""Orientation dispersion: Watson and Bingham distributions, and dispersed axially symmetric kernels.

Watson (Mardia & Jupp, Directional Statistics, 2000; Zhang et al., NeuroImage 61:1000, 2012):

    W(n) = exp(κ (μ·n)²) / (4π ₁F₁(½; 3/2; κ)),   ODI = (2/π) arctan(1/κ),

κ ≥ 0 the concentration (dimensionless), μ the unit mean axis. Bingham adds a second axis and a
second concentration: B(n) ∝ exp(κ₁ (μ₁·n)² + κ₂ (μ₂·n)²), κ₁ ≥ κ₂ ≥ 0.

A dispersed kernel is the spherical convolution of an axially symmetric kernel K(b, ĝ·n) with the
distribution: E(ĝ) = ∫ P(n) K(b, ĝ·n) dn over the unit sphere.

Watson (default, `watson_convolve`): Legendre (zonal spherical-harmonic) convolution. For even K and a
Watson density, Funk–Hecke gives

    E(ĝ) = Σ_{l even ≤ L} (2l + 1) k_l w_l P_l(ĝ·μ),
    k_l = ∫₀¹ K(t) P_l(t) dt,   w_l = ∫₀¹ e^{κt²} P_l(t) dt / ∫₀¹ e^{κt²} dt,

k_l by Gauss–Legendre quadrature in t (any kernel, 32 nodes), w_l by Gauss–Legendre in u = 1 − cos θ
(θ the polar angle from μ) on [0, 1 − cos θ_max], θ_max = min(π/2, c/√κ), c = 6 (the density beyond
θ_max is below e^{−36} of its peak, so the nodes follow the concentration for any κ ∈ [0, ∞) and e^κ
never appears). κ = 0 gives w_l = δ_l0, the spherical mean, exactly. Measured (benchmarks/forward_signals.py, against
a 400 000-point Fibonacci sphere): L = 40 is within 3e-7 for κ ∈ [0, 128], b·d ≤ 30, in float32 and
float64, and 8–9× faster than the product rule below at equal or better accuracy (figures in
benchmarks/results/forward_signals.md).

Product rule (`watson_disperse`, and Bingham, which is not zonal): Gauss–Legendre in θ ∈ [0, θ_max]
× trapezoid in φ about μ, normalised by the same quadrature of the density (so E(b = 0) = 1 exactly).
16 × 32 nodes: 2e-7 for b·d ≤ 9 and 2e-5 at b·d = 30. Both use the antipodal symmetry (n ≡ −n).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import dawsn
from jaxtyping import Array, Float

from .gaussian import tensor_frame

Vector = Float[Array, "3"]
Measurements = Float[Array, " n_meas"]
Directions = Float[Array, "n_meas 3"]

#: Product-rule size (polar Gauss–Legendre nodes × azimuthal trapezoid nodes). Measured against
#: a 400 000-point Fibonacci sphere (float64), stick, κ ∈ [0, 128]: max error 2e-7 (the reference's
#: own floor) for b·d ≤ 9 and 2e-5 for b·d = 30; 12 × 24 gives 6e-6 and 5e-4 (see the benchmark).
N_POLAR = 16
N_AZIMUTH = 32
#: Legendre convolution: maximum even degree, kernel nodes in t, Watson nodes in u = 1 − cos θ.
DEGREE = 40
N_KERNEL_NODES = 32
N_WATSON_NODES = 32
#: θ_max = c/√κ confines the polar nodes to where exp(−κ sin²θ) > e^{−c²}.
_THETA_SPREAD = 6.0


def odi_from_kappa(kappa):
    """Orientation dispersion index ODI = (2/π) arctan(1/κ) ∈ (0, 1]; κ = 0 gives 1.

    Written as 1 − (2/π) arctan(κ) (the same for κ ≥ 0) so that κ = 0 is finite with a finite gradient.
    """
    return 1.0 - (2.0 / jnp.pi) * jnp.arctan(kappa)


def kappa_from_odi(odi):
    """Inverse of `odi_from_kappa`: κ = 1/tan(π ODI/2) = tan(π (1 − ODI)/2), for ODI ∈ (0, 1]."""
    return jnp.tan(0.5 * jnp.pi * (1.0 - odi))


def _log_hyp1f1_half(kappa):
    """ln ₁F₁(½; 3/2; κ) = κ + ln(D(√κ)/√κ) for κ ≥ 0, D the Dawson function; finite at κ = 0."""
    small = kappa < 1e-4
    k_safe = jnp.where(small, 1.0, kappa)
    x = jnp.sqrt(k_safe)
    closed = k_safe + jnp.log(dawsn(x) / x)
    series = kappa / 3.0 - 2.0 * kappa**2 / 45.0  # ln(1 + κ/3 + κ²/10 + …)
    return jnp.where(small, series, closed)


def watson_log_normaliser(kappa):
    """ln(4π ₁F₁(½; 3/2; κ)), the log normaliser of the Watson density (κ ≥ 0)."""
    return math.log(4.0 * math.pi) + _log_hyp1f1_half(kappa)


def watson_pdf(n: Float[Array, "... 3"], mu: Vector, kappa) -> Float[Array, "..."]:
    """Watson density W(n) on the unit sphere (per steradian).

    Args:
        n: unit vectors, (..., 3).
        mu: unit mean axis, (3,).
        kappa: concentration κ ≥ 0 (dimensionless).
    """
    c = n @ mu
    return jnp.exp(kappa * (c**2 - 1.0) + kappa - watson_log_normaliser(kappa))


def frame_from_axis(mu: Vector) -> Float[Array, "3 3"]:
    """Orthonormal rows (μ, e₁, e₂), smooth in μ away from the pole flip (any completion works here
    because a Watson integrand does not depend on the azimuth origin)."""
    # Pick the Cartesian axis least aligned with μ to build e₁ (no division by ~0).
    helper = jnp.where(jnp.abs(mu[2]) < 0.9, jnp.array([0.0, 0.0, 1.0], mu.dtype), jnp.array([1.0, 0.0, 0.0], mu.dtype))
    e1 = jnp.cross(mu, helper)
    e1 = e1 / jnp.linalg.norm(e1)
    e2 = jnp.cross(mu, e1)
    return jnp.stack([mu, e1, e2])


def _polar_limit(kappa_eff):
    """θ_max = min(π/2, c/√κ), with a double where so κ → 0 has a finite gradient."""
    wide = kappa_eff <= (_THETA_SPREAD / (0.5 * math.pi)) ** 2
    k_safe = jnp.where(wide, 1.0, kappa_eff)
    return jnp.where(wide, 0.5 * math.pi, _THETA_SPREAD / jnp.sqrt(k_safe))


def _unit_nodes(n_polar: int, n_azimuth: int):
    """Gauss–Legendre nodes x ∈ [0, 1] with weights, and azimuths φ_j = 2πj/N (NumPy, static)."""
    x, w = np.polynomial.legendre.leggauss(n_polar)
    phi = 2.0 * np.pi * np.arange(n_azimuth) / n_azimuth
    return 0.5 * (x + 1.0), 0.5 * w, phi


def hemisphere_nodes(frame: Float[Array, "3 3"], theta_max, n_polar: int = N_POLAR, n_azimuth: int = N_AZIMUTH):
    """Product-rule nodes on the cap θ ≤ θ_max about frame[0], θ ∈ [0, θ_max] ⊂ [0, π/2].

    Returns:
        nodes (N, 3) unit vectors, weights (N,) (solid angle, sum = cap area), cos θ (N,), and
        (sin θ cos φ) (N,) (the component along frame[1], for Bingham).
    """
    x, w, phi = _unit_nodes(n_polar, n_azimuth)
    dtype = jnp.result_type(frame.dtype, float)
    theta = theta_max * jnp.asarray(x, dtype)  # (P,)
    st, ct = jnp.sin(theta), jnp.cos(theta)
    cphi, sphi = jnp.asarray(np.cos(phi), dtype), jnp.asarray(np.sin(phi), dtype)  # (A,)
    local = jnp.stack(
        [jnp.broadcast_to(ct[:, None], (n_polar, n_azimuth)), st[:, None] * cphi[None, :], st[:, None] * sphi[None, :]],
        axis=-1,
    ).reshape(-1, 3)
    nodes = local @ frame
    weights = (theta_max * jnp.asarray(w, dtype) * st)[:, None] * jnp.full((1, n_azimuth), 2.0 * math.pi / n_azimuth)
    return nodes, weights.reshape(-1), local[:, 0], local[:, 1]


def disperse(kernel, directions: Directions, nodes, log_density_weights) -> Measurements:
    """∫ P(n) K(ĝ·n) dn ≈ Σ_j p_j K(ĝ·n_j) / Σ_j p_j, with p_j the quadrature weights times the
    (unnormalised) density at the nodes.

    Args:
        kernel: function of cos(ĝ, n), shape (n_meas, N), returning the kernel there, same shape.
        directions: unit gradient directions, (n_meas, 3).
        nodes: (N, 3) unit vectors.
        log_density_weights: (N,) log of quadrature weight × unnormalised density.
    """
    p = jnp.exp(log_density_weights - jnp.max(log_density_weights))
    p = p / jnp.sum(p)
    cos_gn = directions @ nodes.T  # (n_meas, N)
    return kernel(cos_gn) @ p


def watson_disperse(
    kernel, directions: Directions, mu: Vector, kappa, *, n_polar: int = N_POLAR, n_azimuth: int = N_AZIMUTH
) -> Measurements:
    """Watson-dispersed axially symmetric kernel by the product rule (module docstring).

    Args:
        kernel: K(cos(ĝ, n)) evaluated elementwise on an (n_meas, N) array (must be even in cos).
        directions: unit gradient directions ĝ, (n_meas, 3).
        mu: unit mean axis, (3,).
        kappa: Watson concentration κ ≥ 0.
        n_polar, n_azimuth: quadrature size (static).
    """
    nodes, w, cos_theta, _ = hemisphere_nodes(frame_from_axis(mu), _polar_limit(kappa), n_polar, n_azimuth)
    # ln W up to a constant: κ(cos²θ − 1) = −κ sin²θ ≤ 0, no overflow for any κ.
    log_p = jnp.log(w) + kappa * (cos_theta**2 - 1.0)
    return disperse(kernel, directions, nodes, log_p)


def bingham_disperse(
    kernel,
    directions: Directions,
    mu: Vector,
    psi,
    kappa_1,
    kappa_2,
    *,
    n_polar: int = N_POLAR,
    n_azimuth: int = 2 * N_AZIMUTH,
) -> Measurements:
    """Bingham-dispersed axially symmetric kernel, density ∝ exp(κ₁(μ·n)² + κ₂(μ₂·n)²).

    Args:
        kernel: as in `watson_disperse`.
        directions: unit gradient directions ĝ, (n_meas, 3).
        mu: unit principal axis μ, (3,).
        psi: angle (rad) of the second axis μ₂ about μ (frame of `gaussian.tensor_frame`).
        kappa_1: concentration about μ; kappa_2: concentration along μ₂; κ₁ ≥ κ₂ ≥ 0 (κ₂ = 0 is Watson).
        n_polar, n_azimuth: quadrature size (static); the azimuth carries the κ₂ anisotropy.
    """
    frame = tensor_frame(mu, psi)  # the same (μ, μ₂(ψ), μ₃) frame as the tensor's
    # Relative to the peak, ln B = −(κ₁ − κ₂cos²φ) sin²θ: confinement rate at least κ₁ − κ₂.
    nodes, w, cos_theta, along_2 = hemisphere_nodes(frame, _polar_limit(kappa_1 - kappa_2), n_polar, n_azimuth)
    log_p = jnp.log(w) + kappa_1 * (cos_theta**2 - 1.0) + kappa_2 * along_2**2
    return disperse(kernel, directions, nodes, log_p)


def bingham_log_normaliser(kappa_1, kappa_2, *, n_polar: int = 48, n_azimuth: int = 96):
    """ln ∫ exp(κ₁ t₁² + κ₂ t₂²) dn over the sphere, by the same quadrature (numerical normaliser)."""
    frame = jnp.eye(3)
    nodes, w, cos_theta, along_2 = hemisphere_nodes(frame, _polar_limit(kappa_1 - kappa_2), n_polar, n_azimuth)
    log_terms = jnp.log(w) + kappa_1 * (cos_theta**2 - 1.0) + kappa_2 * along_2**2
    m = jnp.max(log_terms)
    return kappa_1 + m + jnp.log(2.0 * jnp.sum(jnp.exp(log_terms - m)))


# ---------------------------------------------------------- Legendre (zonal harmonic) convolution
def legendre_even(x, degree: int):
    """(P_0, P_2, …, P_degree)(x), shape (..., degree//2 + 1), by the stable three-term recurrence."""
    xp = jnp if isinstance(x, jnp.ndarray) else np
    p_prev, p = xp.ones_like(x), x
    out = [p_prev]
    for l in range(1, degree):
        p_prev, p = p, ((2 * l + 1) * x * p - l * p_prev) / (l + 1)
        if (l + 1) % 2 == 0:
            out.append(p)
    return xp.stack(out, axis=-1)


def watson_legendre_coefficients(kappa, degree: int = DEGREE, n_nodes: int = N_WATSON_NODES):
    """w_l = ⟨P_l(μ·n)⟩ under the Watson density, l = 0, 2, …, degree (w_0 = 1), shape (degree//2 + 1,).

    Gauss–Legendre in u = 1 − cos θ on [0, 1 − cos θ_max]: the integrand e^{−κu(2−u)} P_l(1 − u) is a
    polynomial at κ = 0 (exact, w_l = δ_l0) and an exponential confined to the nodes' range at large κ.
    """
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    kappa = jnp.asarray(kappa)
    dtype = jnp.result_type(kappa, float)  # weak float: float64 under x64, else float32
    u_max = 2.0 * jnp.sin(0.5 * _polar_limit(kappa)) ** 2  # 1 − cos θ_max without cancellation
    u = u_max * jnp.asarray(0.5 * (x + 1.0), dtype)
    p = jnp.asarray(0.5 * w, dtype) * jnp.exp(-kappa * u * (2.0 - u))
    return (p / jnp.sum(p)) @ legendre_even(1.0 - u, degree)


def watson_convolve(
    kernel,
    directions: Directions,
    mu: Vector,
    kappa,
    *,
    degree: int = DEGREE,
    n_kernel_nodes: int = N_KERNEL_NODES,
    n_watson_nodes: int = N_WATSON_NODES,
) -> Measurements:
    """Watson-dispersed axially symmetric kernel by Legendre convolution (module docstring).

    Args:
        kernel: K(t), t = cos(ĝ, n), evaluated elementwise on an (n_meas, n_kernel_nodes) array of
            t ∈ [0, 1] (K must be even in t: it is only sampled on [0, 1]).
        directions: unit gradient directions ĝ, (n_meas, 3).
        mu: unit mean axis, (3,).
        kappa: Watson concentration κ ≥ 0.
        degree: maximum even Legendre degree L (static); n_kernel_nodes, n_watson_nodes: static.
    """
    t, w = np.polynomial.legendre.leggauss(n_kernel_nodes)
    t, w = 0.5 * (t + 1.0), 0.5 * w
    directions, mu = jnp.asarray(directions), jnp.asarray(mu)  # NumPy float64 becomes the default float
    dtype = jnp.result_type(directions, mu, float)
    # k_l for every measurement: the kernel on the t nodes times a static table w_j P_l(t_j).
    table = jnp.asarray(w[:, None] * legendre_even(t, degree), dtype)  # (n_t, n_l)
    k = kernel(jnp.broadcast_to(jnp.asarray(t, dtype)[None, :], (directions.shape[0], n_kernel_nodes))) @ table
    ls = np.arange(0, degree + 1, 2)
    wl = jnp.asarray(2 * ls + 1, dtype) * watson_legendre_coefficients(kappa, degree, n_watson_nodes)
    return (legendre_even(directions @ mu, degree) * k) @ wl


# ----------------------------------------------------------------- dispersed Gaussian kernels
def watson_stick(bvalues: Measurements, directions: Directions, mu: Vector, kappa, d_par, **quad) -> Measurements:
    """Watson-dispersed stick: ∫ W(n) exp(−b d_par (ĝ·n)²) dn (NODDI intra-neurite, Zhang et al. 2012).

    Args:
        bvalues: b-values, ms/µm². directions: unit ĝ, (n_meas, 3). mu: mean axis, (3,).
        kappa: Watson concentration. d_par: diffusivity along the sticks, µm²/ms.
    """
    bd = (bvalues * d_par)[:, None]
    return watson_convolve(lambda t: jnp.exp(-bd * t**2), directions, mu, kappa, **quad)


def watson_zeppelin(
    bvalues: Measurements, directions: Directions, mu: Vector, kappa, d_par, d_perp, **quad
) -> Measurements:
    """Watson-dispersed zeppelin: ∫ W(n) exp(−b[d_perp + (d_par − d_perp)(ĝ·n)²]) dn.

    The isotropic factor exp(−b d_perp) comes out of the integral. Diffusivities in µm²/ms.
    """
    bd = (bvalues * (d_par - d_perp))[:, None]
    return jnp.exp(-bvalues * d_perp) * watson_convolve(lambda t: jnp.exp(-bd * t**2), directions, mu, kappa, **quad)


def bingham_stick(
    bvalues: Measurements, directions: Directions, mu: Vector, psi, kappa_1, kappa_2, d_par, **quad
) -> Measurements:
    """Bingham-dispersed stick (Tariq et al., NeuroImage 133:207, 2016). Units as `watson_stick`."""
    bd = (bvalues * d_par)[:, None]
    return bingham_disperse(lambda c: jnp.exp(-bd * c**2), directions, mu, psi, kappa_1, kappa_2, **quad)

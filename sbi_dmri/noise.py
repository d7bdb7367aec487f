"""Measurement noise: Gaussian and Rician, with SNR = S0 / σ.

Signals inside the package are normalised (S0 = 1), so σ = 1 / SNR unless S0 is given.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
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


#: Gauss–Hermite nodes of `log_likelihood_s0_marginal`'s integral over the b = 0 scale.
S0_NODES = 5


def log_likelihood_s0_marginal(y, mu, sigma, kind: NoiseKind = "gaussian", *, nodes: int = S0_NODES):
    """log p(y | μ, σ) of signals y divided by their own noisy b = 0 mean, over the last axis (S0 unknown).

    The raw signals are z = S0 (μ + noise), the noise of sd σ·S0 (SNR = 1/σ relative to the voxel's true
    S0, as the simulators define it), and y = z / m(z) with m the mean of the b = 0 entries. S0 drops out,
    and the density of y on the plane m(y) = 1 is exactly (u = m(z)/S0, the unknown b = 0 scale)

        p(y | μ, σ) = ∫₀^∞ u^(M−1) Π_i p(u y_i | μ_i, σ) du,

    the u^(M−1) being the Jacobian of z = u y. The integral is taken by `nodes`-point Gauss–Hermite
    quadrature around the mode u* and curvature of its Gaussian-noise approximation,
    Σy² u*² − Σyμ u* − (M−1)σ² = 0 and 1/τ² = (M−1)/u*² + Σy²/σ² (u* ≈ 1, τ ≈ σ/√M).

    A likelihood at S0 = 1 ignores the error that the b = 0 normalisation shares over all measurements
    and gives over-confident posteriors (mostly in the signal fractions). Marginalising S0 with a flat
    prior and σ fixed instead (Laplace at the least-squares scale, this function's earlier form) misses
    that the noise of y scales with 1/m(z): on the shipped NODDI network at SNR 10 (hardi_2shell, 5000
    simulations, importance-corrected posterior) it left ndi's 80 % interval covering 0.783, against
    0.796 with this density (`benchmarks/s0_likelihood.py`). y, mu (..., M) with M ≥ 2; sigma broadcastable to (..., 1).
    """
    y, mu = jnp.asarray(y), jnp.asarray(mu)
    shape = jnp.broadcast_shapes(y.shape, mu.shape)
    M = shape[-1]
    sig = jnp.broadcast_to(jnp.asarray(sigma), shape[:-1] + (1,))[..., 0]
    syy = jnp.maximum(jnp.sum(y**2, axis=-1), 1e-12)  # on y's own shape: y is shared by many draws μ
    syu = jnp.sum(y * mu, axis=-1)
    u_star = (syu + jnp.sqrt(syu**2 + 4.0 * syy * (M - 1) * sig**2)) / (2.0 * syy)
    tau = 1.0 / jnp.sqrt((M - 1) / u_star**2 + syy / sig**2)
    x, w = np.polynomial.hermite.hermgauss(nodes)
    terms = []
    for xk, wk in zip(x, w):
        u = jnp.maximum(u_star + np.sqrt(2.0) * xk * tau, 1e-6)
        terms.append(float(np.log(wk) + xk**2) + (M - 1) * jnp.log(u)
                     + log_likelihood(u[..., None] * y, mu, sig[..., None], kind))
    return jax.scipy.special.logsumexp(jnp.stack(terms), axis=0) + jnp.log(np.sqrt(2.0) * tau)


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


#: The quick fits `estimate_sigma_from_residuals` chooses between (name, number of linear parameters).
_TENSOR_FITS = {"DTI": 7, "DKI": 22}


def _tensor_design(bvalues, directions, kurtosis: bool):
    """Design matrix of log S = log S0 − b gᵀDg (+ b² D̄² gᵢgⱼgₖgₗ Wᵢⱼₖₗ / 6): (M, 7) or (M, 22).

    The kurtosis columns absorb D̄² into the 15 independent W elements (a linear reparametrisation:
    the residuals, all this is used for, are unchanged).
    """
    import itertools

    import numpy as np

    b = np.asarray(bvalues, np.float64)
    g = np.asarray(directions, np.float64)
    cols = [np.ones_like(b)]
    cols += [-b * g[:, i] * g[:, j] * (1.0 if i == j else 2.0) for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))]
    if kurtosis:
        cols += [b**2 / 6.0 * np.prod(g[:, list(c)], axis=1)
                 for c in itertools.combinations_with_replacement(range(3), 4)]
    return np.stack(cols, axis=1)


def estimate_sigma_from_residuals(signals, bvalues, directions, *, valid=None, max_voxels: int = 5000,
                                  seed: int = 0, n_iterations: int = 3) -> tuple[float, str, int]:
    """One noise σ for a set of voxels from the residuals of a quick tensor fit (for protocols with < 2 b = 0).

    Without repeated b = 0 measurements (`estimate_snr`) the noise has to be read from how far the
    signals scatter around a smooth model. Each voxel is fitted by weighted linear least squares on
    log S with weights Ŝ² (iterated; Veraart, Sijbers, Sunaert, Leemans & Jeurissen, NeuroImage 81:335,
    2013), by DTI (7 parameters) for a single shell, or by DKI (22 parameters; Jensen, Helpern, Ramani,
    Lu & Kaczynski, MRM 53:1432, 2005) when the non-zero b-values spread by more than a factor 1.5 and
    there are ≥ 10 more measurements than parameters. The residuals are taken in signal units:
    σ² = median over voxels of RSS/(M − p), divided by the median of χ²_k/k (k = M − p).

    Bias (read the result as a lower bound on the SNR): where the tensor model misfits the tissue
    (crossing fibres at high b, b ≫ 2 ms/µm² even for DKI) the residual includes the misfit and σ is
    overestimated; measurements at the Rician noise floor (S ≲ 2σ) bias it too. The median over voxels
    limits the effect of a minority of badly fitted voxels.

    Args:
        signals: (V, M) raw magnitude intensities (σ is returned in the same unit).
        bvalues: (M,) b in ms/µm². directions: (M, 3) unit gradient directions (any for b = 0).
        valid: (V,) bool, voxels to use (default: all with finite signals, not all zero).
        max_voxels: at most this many valid voxels, drawn at random (with `seed`), are fitted.
        n_iterations: reweighting passes after the unweighted log-linear start.
    Returns:
        (sigma, model, n_voxels): σ in signal units, "DTI" or "DKI", and how many voxels it came from.
    """
    import numpy as np
    from scipy.stats import chi2

    s = np.asarray(signals, np.float64)
    b = np.asarray(bvalues, np.float64)
    M = s.shape[1]
    nonzero = b[b > 0.05]
    if nonzero.size == 0:
        raise ValueError("no diffusion-weighted measurement: the noise cannot be estimated from a fit")
    model = "DKI" if (nonzero.max() > 1.5 * nonzero.min() and M - _TENSOR_FITS["DKI"] >= 10) else "DTI"
    X = _tensor_design(b, directions, kurtosis=model == "DKI")
    p = int(np.linalg.matrix_rank(X))
    k = M - p
    if k < 3:
        raise ValueError(f"{M} measurements leave {k} degrees of freedom after a {model} fit: too few to "
                         "estimate the noise; give the SNR explicitly")
    ok = np.all(np.isfinite(s), axis=1) & (np.max(s, axis=1) > 0)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        raise ValueError("no voxel with finite, positive signals to estimate the noise level from")
    if idx.size > max_voxels:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_voxels, replace=False))
    y = s[idx]
    log_y = np.log(np.maximum(y, 1e-3 * y.max(axis=1, keepdims=True)))  # zeros: magnitude floor, tiny weight
    beta = np.linalg.lstsq(X, log_y.T, rcond=None)[0].T  # (V, P) unweighted start
    log_cap = np.log(2.0 * y.max(axis=1, keepdims=True))  # keeps exp() finite for wild starts
    for _ in range(n_iterations):
        w = np.exp(2.0 * np.minimum(beta @ X.T, log_cap))  # (V, M): Var(log S) ≈ σ²/S²
        normal = np.einsum("mi,vm,mj->vij", X, w, X)
        rhs = np.einsum("mi,vm->vi", X, w * log_y)
        beta = np.einsum("vij,vj->vi", np.linalg.pinv(normal, hermitian=True), rhs)
    fitted = np.exp(np.minimum(beta @ X.T, log_cap))
    rss = np.sum((y - fitted) ** 2, axis=1)
    sigma = float(np.sqrt(np.median(rss / k) * k / chi2.median(k)))
    return sigma, model, int(idx.size)

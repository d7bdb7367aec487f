"""The standardized unconstrained parameter vector θ the networks work in, and the voxel's DTI frame.

    params (constrained, named) ──prior charts──► z ──standardize──► θ = (z − mean) / std   (B, D)

Scalars and fractions use the prior's own charts (`sbi_dmri.priors`: logit for boxes, additive
log-ratio for the simplex), so no posterior mass can leave the prior's support.

Orientation (axes, n ≡ −n): canonical frame + radially compressed gnomonic chart.
  1. Rotate the axis into the voxel's frame R (rows u, v, e₁; e₁ = DTI principal eigenvector, from
     `dti_frame`): n' = R n. When the DTI axis is good, n' is near the pole (0, 0, ±1).
  2. Gnomonic chart g = (n'_x, n'_y) / n'_z: the same for n' and −n', so the antipodal symmetry is
     exact by construction (ARCHITECTURE.md decision 4), and the posterior sits near g = 0 where the
     chart is nearly flat (metric distortion O(|g|²)).
  3. Radial compression w = g · ρ/|g| with ρ² = log(1 + |g|²). The gnomonic radius is tan ω (ω the
     angle from e₁) and has Cauchy-like tails: under the uniform axis prior P(|g| > 10) = 10 % and
     P(|g| > 100) = 1 %, so isotropic or low-SNR voxels (where the DTI axis carries no information)
     would put training points at |θ| ~ 10²–10⁶ and dominate a maximum-likelihood loss. With
     cos ω = exp(−ρ²/2) the uniform axis maps EXACTLY to a standard 2-D normal (log|∂area/∂w| =
     −ρ²/2), a point 0.1° from the equator sits at ρ = 3.6, and near the origin w ≈ g (unchanged).
  Residual seam: the chart still misses the equator of the frame (ω = 90°, ρ → ∞) and is cut there
  (n' and −n' are identified across it). That is where the axis is perpendicular to the DTI axis,
  far from the posterior mass whenever the DTI axis is informative; for uninformative voxels the
  posterior is near uniform and the seam costs only the tails of a 2-D normal.

Rotations preserve area, so the frame does not enter the log-determinant, and the uniform axis prior
is frame-invariant (the normaliser statistics of the axis dims are exactly mean 0, std 1).
Models without orientation parameters ignore frames.

Shapes: params scalars (...,), axes (..., 3); θ (..., D); frame (..., 3, 3) or None (identity).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ..models.base import Model
from ..priors import AxisUniform, Prior

Params = dict[str, jax.Array]

# Below this squared radius the ratios log1p(x)/x and expm1(x)/x use their Taylor series.
_SMALL = 1e-4


def _log1p_over_x(x):
    safe = jnp.where(x > _SMALL, x, 1.0)
    return jnp.where(x > _SMALL, jnp.log1p(safe) / safe, 1.0 - 0.5 * x + x * x / 3.0)


def _neg_expm1_neg_over_x(x):
    """(1 − e^{−x}) / x, stable at 0."""
    safe = jnp.where(x > _SMALL, x, 1.0)
    return jnp.where(x > _SMALL, -jnp.expm1(-safe) / safe, 1.0 - 0.5 * x + x * x / 6.0)


def axis_to_chart(n_frame: Float[Array, "... 3"]) -> Float[Array, "... 2"]:
    """Axis in frame coordinates → compressed gnomonic chart w (..., 2); same for n and −n."""
    nz = n_frame[..., 2]
    nz = jnp.where(jnp.abs(nz) < 1e-12, jnp.where(nz < 0, -1e-12, 1e-12), nz)
    g = n_frame[..., :2] / nz[..., None]
    r2 = jnp.sum(g * g, axis=-1)
    return g * jnp.sqrt(_log1p_over_x(r2))[..., None]


def chart_to_axis(w: Float[Array, "... 2"]) -> tuple[Float[Array, "... 3"], Float[Array, "..."]]:
    """w → (unit axis in frame coordinates with n_z > 0, log |∂area/∂w| = −|w|²/2)."""
    rho2 = jnp.sum(w * w, axis=-1)
    # n_z = cos ω = exp(−ρ²/2); (n_x, n_y) = (w/ρ) sin ω with sin ω / ρ = sqrt((1 − e^{−ρ²})/ρ²).
    xy = w * jnp.sqrt(_neg_expm1_neg_over_x(rho2))[..., None]
    n = jnp.concatenate([xy, jnp.exp(-0.5 * rho2)[..., None]], axis=-1)
    return n, -0.5 * rho2


def _rotate(frame, v):
    return jnp.einsum("...ij,...j->...i", frame, v)


def _rotate_back(frame, v):
    return jnp.einsum("...ji,...j->...i", frame, v)


class ParameterSpace:
    """Constrained parameter dicts ⇄ standardized unconstrained θ (..., D).

    Args:
        model: the tissue model (its parameter names and default prior).
        prior: the prior whose charts are used (default `model.prior`).
        stats: {"mean": list[D], "std": list[D]} normaliser statistics (from a checkpoint); None uses
            `analytic_stats(prior)` (exact moments of z under the prior).
    """

    def __init__(self, model: Model, prior: Prior | None = None, stats: Mapping | None = None):
        self.model = model
        self.prior = model.prior if prior is None else prior
        self.dim = self.prior.dim
        self.axis_names = tuple(f.names[0] for f in self.prior.factors if isinstance(f, AxisUniform))
        self.has_orientation = bool(self.axis_names)
        self.names = self.prior.names
        self._set_stats(analytic_stats(self.prior) if stats is None else stats)

    # ------------------------------------------------------------------ normaliser statistics
    def _set_stats(self, stats: Mapping) -> None:
        mean = np.asarray(stats["mean"], np.float64)
        std = np.asarray(stats["std"], np.float64)
        if mean.shape != (self.dim,) or std.shape != (self.dim,) or np.any(std <= 0):
            raise ValueError(f"stats need mean and positive std of length {self.dim}, got {mean}, {std}")
        self.stats = {"mean": mean.tolist(), "std": std.tolist()}
        self._mean = jnp.asarray(mean, jnp.float32)
        self._std = jnp.asarray(std, jnp.float32)
        self._log_std_sum = float(np.sum(np.log(std)))

    def fit_stats(self, key, n: int = 65536) -> "ParameterSpace":
        """Estimate mean/std of z under the prior (sets `self.stats`, JSON-ready; returns self).

        Axis dims are exactly N(0, 1) under the uniform axis prior (module docstring): set, not estimated.
        """
        z = np.asarray(jax.jit(lambda k: self._to_z(self.prior.sample(k, n), None))(key), np.float64)
        mean, std = z.mean(axis=0), z.std(axis=0)
        for f, s in zip(self.prior.factors, self.prior.slices):
            if isinstance(f, AxisUniform):
                mean[s], std[s] = 0.0, 1.0
        self._set_stats({"mean": mean, "std": std})
        return self

    # ------------------------------------------------------------------ maps
    def _to_z(self, params: Mapping[str, jax.Array], frame) -> jax.Array:
        parts = []
        for f in self.prior.factors:
            if isinstance(f, AxisUniform):
                n = params[f.names[0]]
                if frame is not None:
                    n = _rotate(jnp.broadcast_to(frame, n.shape[:-1] + (3, 3)), n)
                parts.append(axis_to_chart(n))
            else:
                parts.append(f.to_unconstrained(params))
        return jnp.concatenate(parts, axis=-1)

    def to_theta(self, params: Mapping[str, jax.Array], frame: Float[Array, "... 3 3"] | None = None) -> jax.Array:
        """Constrained params (scalars (...,), axes (..., 3)) → θ (..., D)."""
        z = self._to_z(params, frame)
        return (z - jnp.broadcast_to(self._mean, z.shape)) / jnp.broadcast_to(self._std, z.shape)

    def from_theta_and_log_det(self, theta: Float[Array, "... D"], frame=None) -> tuple[Params, jax.Array]:
        """θ → (params, log |∂ constrained / ∂θ|), axes with n_z ≥ 0 in world coordinates.

        The log-determinant is w.r.t. Lebesgue measure on scalars/fractions and area on the sphere.
        """
        z = theta * jnp.broadcast_to(self._std, theta.shape) + jnp.broadcast_to(self._mean, theta.shape)
        out: Params = {}
        total = jnp.full(theta.shape[:-1], self._log_std_sum, theta.dtype)
        for f, s in zip(self.prior.factors, self.prior.slices):
            if isinstance(f, AxisUniform):
                n, ld = chart_to_axis(z[..., s])
                if frame is not None:
                    n = _rotate_back(jnp.broadcast_to(frame, n.shape[:-1] + (3, 3)), n)
                out[f.names[0]] = jnp.where(n[..., 2:3] < 0, -n, n)
            else:
                p, ld = f.from_unconstrained(z[..., s])
                out.update(p)
            total = total + ld
        return out, total

    def from_theta(self, theta, frame=None) -> Params:
        return self.from_theta_and_log_det(theta, frame)[0]

    def log_det(self, theta, frame=None) -> jax.Array:
        """log |∂ constrained / ∂θ| (...,); the frame does not change it (rotations keep area)."""
        return self.from_theta_and_log_det(theta, frame)[1]

    def prior_log_prob_theta(self, theta, frame=None) -> jax.Array:
        """log density of the prior's image in θ space."""
        params, ld = self.from_theta_and_log_det(theta, frame)
        return self.prior.log_prob(params) + ld

    def __repr__(self):
        return f"ParameterSpace({self.model.name!r}, dim={self.dim}, names={list(self.names)})"


def analytic_stats(prior: Prior) -> dict[str, list[float]]:
    """Exact mean and std of each z dim under the prior (no sampling, so deterministic and instant).

    Uniform and LogUniform: z = logit(U), U ~ U(0, 1), is standard logistic: mean 0, std π/√3.
    Dirichlet(α) in the additive log-ratio chart: zᵢ = log Gᵢ − log G_K with Gᵢ ~ Gamma(αᵢ) independent,
    and E log G = ψ(α), Var log G = ψ′(α): mean ψ(αᵢ) − ψ(α_K), variance ψ′(αᵢ) + ψ′(α_K).
    Uniform axis: N(0, I₂) in the compressed chart (module docstring). Other factor types: ValueError
    (call `fit_stats`).
    """
    from scipy.special import polygamma, psi

    from ..priors import Dirichlet, LogUniform, Uniform

    mean, std = [], []
    for f in prior.factors:
        if isinstance(f, (Uniform, LogUniform)):
            mean.append(0.0)
            std.append(float(np.pi / np.sqrt(3.0)))
        elif isinstance(f, AxisUniform):
            mean += [0.0, 0.0]
            std += [1.0, 1.0]
        elif isinstance(f, Dirichlet):
            a = np.asarray(f.alpha, np.float64)
            mean += (psi(a[:-1]) - psi(a[-1])).tolist()
            std += np.sqrt(polygamma(1, a[:-1]) + polygamma(1, a[-1])).tolist()
        else:
            raise ValueError(f"no analytic statistics for prior factor {f!r}; use ParameterSpace.fit_stats")
    return {"mean": mean, "std": std}


# ---------------------------------------------------------------------- DTI frame
def _completion(e1):
    """Deterministic rotation with third row e1: u ⊥ e1 from the world axis least aligned with e1."""
    a = jax.nn.one_hot(jnp.argmin(jnp.abs(e1), axis=-1), 3, dtype=e1.dtype)
    u = a - jnp.sum(a * e1, axis=-1, keepdims=True) * e1
    u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
    v = jnp.cross(e1, u)
    return jnp.stack([u, v, e1], axis=-2)


def dti_frame(
    signals: Float[Array, "B M"],
    mask: Bool[Array, "B M"],
    bvalues: Float[Array, "M"] | Float[Array, "B M"],
    directions: Float[Array, "M 3"] | Float[Array, "B M 3"],
    *,
    b_max: float = 2.5,
    ridge: float = 1e-6,
) -> Float[Array, "B 3 3"]:
    """Per-voxel frame from a log-linear diffusion-tensor fit (weighted least squares, weights S²).

    Args:
        signals: S/S0 (B, M).
        mask: True for real measurements (B, M); measurements with b > b_max (ms/µm²) are left out
            (the tensor model fails at high b).
        bvalues: b in ms/µm², (M,) or (B, M). directions: unit ĝ, (M, 3) or (B, M, 3).
    Returns:
        (B, 3, 3) rotations whose third row is the principal eigenvector e₁ (sign: e₁_z ≥ 0); the
        first row is the world axis least aligned with e₁, orthogonalised (deterministic completion).
    """
    B, M = signals.shape
    b = jnp.broadcast_to(bvalues, (B, M)).astype(jnp.float32)
    g = jnp.broadcast_to(directions, (B, M, 3)).astype(jnp.float32)
    gx, gy, gz = g[..., 0], g[..., 1], g[..., 2]
    X = jnp.stack([jnp.ones_like(b), -b * gx * gx, -b * gy * gy, -b * gz * gz,
                   -2 * b * gx * gy, -2 * b * gx * gz, -2 * b * gy * gz], axis=-1)
    s = jnp.clip(signals, 1e-3, None)
    w = jnp.where(mask & (b <= b_max) & (signals > 0), s * s, 0.0)
    XtW = X * w[..., None]
    A = jnp.einsum("bmi,bmj->bij", XtW, X) + ridge * jnp.eye(7, dtype=X.dtype)[None]
    y = jnp.einsum("bmi,bm->bi", XtW, jnp.log(s))
    d = jnp.linalg.solve(A, y[..., None])[..., 0]
    D = jnp.stack([
        jnp.stack([d[:, 1], d[:, 4], d[:, 5]], -1),
        jnp.stack([d[:, 4], d[:, 2], d[:, 6]], -1),
        jnp.stack([d[:, 5], d[:, 6], d[:, 3]], -1),
    ], axis=-2)
    _, vecs = jnp.linalg.eigh(D)
    e1 = vecs[..., :, 2]
    e1 = jnp.where(e1[..., 2:3] < 0, -e1, e1)
    return _completion(e1)


def identity_frames(batch_size: int) -> Float[Array, "B 3 3"]:
    return jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (batch_size, 3, 3))

"""A linear-Gaussian problem whose posterior is known exactly, to test posteriors and diagnostics.

    θ ~ N(μ₀, Σ₀)                 (d parameters)
    x = A θ + ε,  ε ~ N(0, σ² I)  (m observations)

The posterior is Gaussian with (Bishop, PRML 2006, eq. 2.116–2.117)

    Σ_post = (Σ₀⁻¹ + AᵀA/σ²)⁻¹,   μ_post(x) = Σ_post (Σ₀⁻¹ μ₀ + Aᵀ x / σ²).

Σ_post does not depend on x, so SBC, coverage and TARP on exact posterior draws must pass their
gates, and draws from a deliberately wrong posterior (`posterior_samples(..., variance_scale=0.5)`
for over-confidence, `mean_shift=1` for bias) must fail them. The quantities are dimensionless.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class LinearGaussian:
    """θ ~ N(mu0, cov0), x = A θ + N(0, sigma² I). Arrays are NumPy float64: mu0 (d,), cov0 (d, d), A (m, d)."""

    mu0: np.ndarray
    cov0: np.ndarray
    A: np.ndarray
    sigma: float

    @classmethod
    def default(cls, d: int = 3, m: int = 5, *, sigma: float = 0.5, seed: int = 0) -> "LinearGaussian":
        """A fixed, well-conditioned instance: correlated prior, random A, posterior narrower than prior."""
        rng = np.random.default_rng(seed)
        L = np.tril(rng.normal(size=(d, d)) * 0.3) + np.eye(d)
        return cls(
            mu0=np.linspace(-0.5, 0.5, d),
            cov0=L @ L.T,
            A=rng.normal(size=(m, d)) / np.sqrt(d),
            sigma=float(sigma),
        )

    @property
    def dim(self) -> int:
        return self.mu0.shape[0]

    @property
    def posterior_cov(self) -> np.ndarray:
        """Σ_post (d, d), the same for every x."""
        precision = np.linalg.inv(self.cov0) + self.A.T @ self.A / self.sigma**2
        return np.linalg.inv(precision)

    def sample_prior(self, key: jax.Array, n: int) -> jax.Array:
        """θ (n, d) from the prior."""
        chol = jnp.asarray(np.linalg.cholesky(self.cov0), jnp.float32)
        z = jax.random.normal(key, (n, self.dim))
        return jnp.asarray(self.mu0, jnp.float32)[None, :] + z @ chol.T

    def simulate(self, key: jax.Array, theta: jax.Array) -> jax.Array:
        """x (n, m) for θ (n, d)."""
        mean = theta @ jnp.asarray(self.A.T, theta.dtype)
        return mean + self.sigma * jax.random.normal(key, mean.shape, mean.dtype)

    def exact_posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mean (n, d), cov (d, d)) of p(θ | x) for x (n, m)."""
        cov = self.posterior_cov
        # μ_post = Σ_post Σ₀⁻¹ μ₀ + Σ_post Aᵀ x / σ², written as a constant plus a linear map of x.
        offset = cov @ np.linalg.solve(self.cov0, self.mu0)
        gain = cov @ self.A.T / self.sigma**2  # (d, m)
        x = jnp.asarray(x)
        mean = jnp.asarray(offset, x.dtype)[None, :] + x @ jnp.asarray(gain.T, x.dtype)
        return mean, jnp.asarray(cov, x.dtype)

    def posterior_samples(
        self,
        key: jax.Array,
        x: jax.Array,
        n_draws: int,
        *,
        variance_scale: float = 1.0,
        mean_shift: float = 0.0,
    ) -> jax.Array:
        """Draws (n, n_draws, d) from N(μ_post + mean_shift·sd_post, variance_scale·Σ_post).

        variance_scale = mean_shift = 0 is the exact posterior; variance_scale < 1 an over-confident
        one; mean_shift ≠ 0 a biased one (shift in units of each parameter's posterior sd).
        """
        mean, _ = self.exact_posterior(x)
        # Σ_post is a constant: factor it in NumPy (variance_scale, mean_shift are Python floats)
        cov = self.posterior_cov
        sd = jnp.asarray(np.sqrt(np.diag(cov)), mean.dtype)
        chol = jnp.asarray(np.linalg.cholesky(cov * variance_scale), mean.dtype)
        z = jax.random.normal(key, (mean.shape[0], n_draws, self.dim), mean.dtype)
        return (mean + mean_shift * sd[None, :])[:, None, :] + z @ chol.T


def toy_test_set(
    seed: int,
    n_sims: int,
    n_draws: int,
    *,
    variance_scale: float = 1.0,
    mean_shift: float = 0.0,
    problem: LinearGaussian | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(samples (n_sims, n_draws, d), truths (n_sims, d)) as NumPy float64: θ from the prior, x
    simulated, draws from the (possibly deliberately wrong) posterior, as in `posterior_samples`.

    Pure NumPy (seeded `default_rng`): no JAX dispatch or compilation, so test sets of any size
    cost milliseconds.
    """
    p = problem or LinearGaussian.default()
    rng = np.random.default_rng(seed)
    theta = p.mu0[None, :] + rng.normal(size=(n_sims, p.dim)) @ np.linalg.cholesky(p.cov0).T
    x = theta @ p.A.T + p.sigma * rng.normal(size=(n_sims, p.A.shape[0]))
    cov = p.posterior_cov
    mean = (x @ p.A / p.sigma**2 + np.linalg.solve(p.cov0, p.mu0)[None, :]) @ cov.T
    mean = mean + mean_shift * np.sqrt(np.diag(cov))[None, :]
    z = rng.normal(size=(n_sims, n_draws, p.dim))
    return mean[:, None, :] + z @ np.linalg.cholesky(variance_scale * cov).T, theta

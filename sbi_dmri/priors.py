"""Priors over named model parameters, and the bijection to an unconstrained vector.

A `Prior` is a product of independent factors, each over one parameter or one group of fractions:

| factor        | support                         | unconstrained chart (dims)                          |
|---------------|---------------------------------|-----------------------------------------------------|
| `Uniform`     | [lo, hi]                        | logit((x − lo)/(hi − lo))                        (1) |
| `LogUniform`  | [lo, hi], lo > 0                | logit of log x rescaled to [0, 1]                (1) |
| `Dirichlet`   | K−1 free fractions, Σ ≤ 1       | additive log-ratio zᵢ = log(fᵢ / f_K)          (K−1) |
| `AxisUniform` | axes n ≡ −n (unit 3-vectors)    | gnomonic (n_x/n_z, n_y/n_z)                      (2) |

Why these charts: posteriors (flows, NUTS, NLLS) live in the unconstrained space, so no mass leaks
outside the prior and no rejection sampling is needed (ARCHITECTURE.md, decision 4). The gnomonic
chart is invariant under n → −n, so an axis has exactly one image: the antipodal symmetry is built
in, not learnt. It misses only the equator n_z = 0 (measure zero); a caller who expects axes near
the equator should rotate its frame first.

Densities are with respect to Lebesgue measure on the free scalars and fractions, and area on the
hemisphere for axes (so the uniform axis density is 1/(2π)). `log_det_jacobian(z)` is
log |∂(constrained)/∂z|, so that log p(z) = log_prob(from_unconstrained(z)) + log_det_jacobian(z).

All functions accept leading batch dimensions: scalars are (...,), axes (..., 3), z (..., dim).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, jax.Array]

# Charts clip their [0, 1] coordinate away from the ends so logit stays finite in float32.
_EPS = 1e-7


def _logit(u):
    u = jnp.clip(u, _EPS, 1.0 - _EPS)
    return jnp.log(u) - jnp.log1p(-u)


def _log_sigmoid_jacobian(z):
    """log σ'(z) = log σ(z) + log σ(−z), stable for large |z|."""
    return -jax.nn.softplus(-z) - jax.nn.softplus(z)


class Factor(abc.ABC):
    """One independent piece of a prior: its parameter names, sampling, density and chart."""

    names: tuple[str, ...]
    dim: int  # unconstrained dimension

    @abc.abstractmethod
    def sample(self, key, n: int) -> Params: ...

    @abc.abstractmethod
    def log_prob(self, params: Mapping[str, jax.Array]) -> jax.Array: ...

    @abc.abstractmethod
    def to_unconstrained(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """(..., dim)"""

    @abc.abstractmethod
    def from_unconstrained(self, z: jax.Array) -> tuple[Params, jax.Array]:
        """z (..., dim) → (params, log|∂params/∂z| of shape (...,))."""


class Uniform(Factor):
    """Uniform on [lower, upper] (units of the parameter)."""

    def __init__(self, name: str, lower: float, upper: float):
        if not (np.isfinite(lower) and np.isfinite(upper) and upper > lower):
            raise ValueError(f"Uniform prior on {name!r} needs finite lower < upper, got [{lower}, {upper}]")
        self.names, self.dim = (name,), 1
        self.lower, self.upper = float(lower), float(upper)

    def sample(self, key, n):
        return {self.names[0]: jax.random.uniform(key, (n,), minval=self.lower, maxval=self.upper)}

    def log_prob(self, params):
        x = params[self.names[0]]
        inside = (x >= self.lower) & (x <= self.upper)
        return jnp.where(inside, -math.log(self.upper - self.lower), -jnp.inf)

    def to_unconstrained(self, params):
        x = params[self.names[0]]
        return _logit((x - self.lower) / (self.upper - self.lower))[..., None]

    def from_unconstrained(self, z):
        z = z[..., 0]
        width = self.upper - self.lower
        x = self.lower + width * jax.nn.sigmoid(z)
        return {self.names[0]: x}, math.log(width) + _log_sigmoid_jacobian(z)

    def __repr__(self):
        return f"Uniform({self.names[0]}, {self.lower:g}, {self.upper:g})"


class LogUniform(Factor):
    """Log-uniform (p ∝ 1/x) on [lower, upper], lower > 0."""

    def __init__(self, name: str, lower: float, upper: float):
        if not (lower > 0 and np.isfinite(upper) and upper > lower):
            raise ValueError(f"LogUniform prior on {name!r} needs 0 < lower < upper, got [{lower}, {upper}]")
        self.names, self.dim = (name,), 1
        self.lower, self.upper = float(lower), float(upper)
        self._log_lo, self._log_width = math.log(lower), math.log(upper / lower)

    def sample(self, key, n):
        u = jax.random.uniform(key, (n,))
        return {self.names[0]: jnp.exp(self._log_lo + self._log_width * u)}

    def log_prob(self, params):
        x = params[self.names[0]]
        inside = (x >= self.lower) & (x <= self.upper)
        return jnp.where(inside, -jnp.log(jnp.where(inside, x, 1.0)) - math.log(self._log_width), -jnp.inf)

    def to_unconstrained(self, params):
        x = params[self.names[0]]
        return _logit((jnp.log(x) - self._log_lo) / self._log_width)[..., None]

    def from_unconstrained(self, z):
        z = z[..., 0]
        logx = self._log_lo + self._log_width * jax.nn.sigmoid(z)
        x = jnp.exp(logx)
        return {self.names[0]: x}, logx + math.log(self._log_width) + _log_sigmoid_jacobian(z)

    def __repr__(self):
        return f"LogUniform({self.names[0]}, {self.lower:g}, {self.upper:g})"


class Dirichlet(Factor):
    """Dirichlet(α) over K volume fractions, of which the first K−1 are named free parameters.

    The last fraction is implied, f_K = 1 − Σ fᵢ. With all α = 1 the free fractions are uniform on the
    simplex {fᵢ ≥ 0, Σ fᵢ ≤ 1}.
    """

    def __init__(self, names: Sequence[str], alpha: Sequence[float] | None = None):
        names = tuple(names)
        if not names:
            raise ValueError("Dirichlet prior needs at least one free fraction")
        alpha = np.ones(len(names) + 1) if alpha is None else np.asarray(alpha, dtype=np.float64)
        if alpha.shape != (len(names) + 1,) or np.any(alpha <= 0):
            raise ValueError(f"Dirichlet over {names} needs {len(names) + 1} positive concentrations, got {alpha}")
        self.names, self.dim = names, len(names)
        self.alpha = alpha
        # Plain Python: a prior may be built while tracing, where float() of a JAX value fails.
        self._log_norm = math.lgamma(float(alpha.sum())) - sum(math.lgamma(float(a)) for a in alpha)

    def _all(self, params):
        free = jnp.stack([params[n] for n in self.names], axis=-1)
        return jnp.concatenate([free, 1.0 - jnp.sum(free, axis=-1, keepdims=True)], axis=-1)

    def sample(self, key, n):
        f = jax.random.dirichlet(key, jnp.asarray(self.alpha, dtype=jnp.float32), (n,))
        return {name: f[:, i] for i, name in enumerate(self.names)}

    def log_prob(self, params):
        f = self._all(params)
        inside = jnp.all(f >= 0, axis=-1)
        logf = jnp.log(jnp.where(f > 0, f, 1.0))
        a1 = jnp.asarray(self.alpha - 1.0, dtype=logf.dtype).reshape((1,) * (logf.ndim - 1) + (-1,))
        lp = self._log_norm + jnp.sum(a1 * logf, axis=-1)
        # α = 1 puts no log f term in, so f = 0 exactly is a valid (boundary) point.
        return jnp.where(inside, lp, -jnp.inf)

    def to_unconstrained(self, params):
        f = jnp.clip(self._all(params), _EPS, 1.0)
        return jnp.log(f[..., :-1]) - jnp.log(f[..., -1:])

    def from_unconstrained(self, z):
        logits = jnp.concatenate([z, jnp.zeros_like(z[..., :1])], axis=-1)
        logf = jax.nn.log_softmax(logits, axis=-1)
        f = jnp.exp(logf)
        # |∂(f₁..f_{K−1})/∂(z₁..z_{K−1})| = f₁ f₂ … f_K for the additive log-ratio chart.
        return {name: f[..., i] for i, name in enumerate(self.names)}, jnp.sum(logf, axis=-1)

    def __repr__(self):
        return f"Dirichlet({', '.join(self.names)}; α={self.alpha.tolist()})"


class AxisUniform(Factor):
    """Uniform distribution of an axis (unit 3-vector with n ≡ −n), density 1/(2π) per hemisphere area.

    Samples are returned with n_z ≥ 0 (the representative the chart uses).
    """

    def __init__(self, name: str):
        self.names, self.dim = (name,), 2

    def sample(self, key, n):
        v = jax.random.normal(key, (n, 3))
        v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
        return {self.names[0]: jnp.where(v[:, 2:3] < 0, -v, v)}

    def log_prob(self, params):
        n = params[self.names[0]]
        return jnp.full(n.shape[:-1], -math.log(2.0 * math.pi), dtype=n.dtype)

    def to_unconstrained(self, params):
        n = params[self.names[0]]
        nz = n[..., 2]
        # n ↦ (n_x, n_y)/n_z is the same for n and −n; keep n_z off 0 so the equator maps far, not to inf.
        nz = jnp.where(jnp.abs(nz) < 1e-6, jnp.where(nz < 0, -1e-6, 1e-6), nz)
        return n[..., :2] / nz[..., None]

    def from_unconstrained(self, z):
        r2 = jnp.sum(z**2, axis=-1, keepdims=True)
        v = jnp.concatenate([z, jnp.ones_like(z[..., :1])], axis=-1) / jnp.sqrt(1.0 + r2)
        # Area element of the gnomonic chart: dA = (1 + a² + b²)^(−3/2) da db.
        return {self.names[0]: v}, -1.5 * jnp.log1p(r2[..., 0])

    def __repr__(self):
        return f"AxisUniform({self.names[0]})"


class Prior:
    """Product of independent factors over named parameters, with the joint unconstrained chart.

    The unconstrained vector concatenates the factors' charts in the order given; `slices` says
    which entries belong to which factor.
    """

    def __init__(self, factors: Sequence[Factor]):
        self.factors = tuple(factors)
        names = [n for f in self.factors for n in f.names]
        if len(set(names)) != len(names):
            raise ValueError(f"a parameter appears in more than one prior factor: {names}")
        self.names = tuple(names)
        offsets = np.cumsum([0] + [f.dim for f in self.factors])
        self.slices = tuple(slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:]))
        self.dim = int(offsets[-1])

    def factor(self, name: str) -> Factor:
        for f in self.factors:
            if name in f.names:
                return f
        raise KeyError(f"no prior factor for parameter {name!r}; have {self.names}")

    def sample(self, key, n: int) -> Params:
        """n draws: dict of (n,) scalars and (n, 3) axes."""
        keys = jax.random.split(key, len(self.factors))
        out: Params = {}
        for k, f in zip(keys, self.factors):
            out.update(f.sample(k, n))
        return out

    def log_prob(self, params: Mapping[str, jax.Array]) -> jax.Array:
        """log density in constrained space (−inf outside the support)."""
        return sum(f.log_prob(params) for f in self.factors)

    def to_unconstrained(self, params: Mapping[str, jax.Array]) -> jax.Array:
        return jnp.concatenate([f.to_unconstrained(params) for f in self.factors], axis=-1)

    def from_unconstrained(self, z: jax.Array) -> Params:
        return self.from_unconstrained_and_log_det(z)[0]

    def from_unconstrained_and_log_det(self, z: jax.Array) -> tuple[Params, jax.Array]:
        out: Params = {}
        total = 0.0
        for f, s in zip(self.factors, self.slices):
            p, ld = f.from_unconstrained(z[..., s])
            out.update(p)
            total = total + ld
        return out, total

    def log_det_jacobian(self, z: jax.Array) -> jax.Array:
        return self.from_unconstrained_and_log_det(z)[1]

    def log_prob_unconstrained(self, z: jax.Array) -> jax.Array:
        """log density of the image of the prior in the unconstrained space."""
        params, ld = self.from_unconstrained_and_log_det(z)
        return self.log_prob(params) + ld

    def __repr__(self):
        return "Prior(" + ", ".join(map(repr, self.factors)) + ")"

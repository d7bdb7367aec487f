"""Starting points that keep a local optimiser out of local minima.

Two steps, both batched over voxels:

1. Orientation seeds from the diffusion tensor: a log-linear least-squares tensor fit on the
   low-b measurements (b ≤ `DTI_MAX_B`, where the signal is close to mono-exponential; Basser et
   al., J Magn Reson B 103:247, 1994), written with the b-tensor so that it also holds for free
   waveforms: log E = log S0 − Σᵢⱼ Bᵢⱼ Dᵢⱼ. The principal eigenvector is the centre of each axis's
   chart (see `chart.py`), so that the seed orientation is z = 0.
2. Brute force, then fine: a fixed set of candidate parameter vectors (prior draws, the same for
   every voxel, axes at the tensor's eigenvector) is scored on every voxel in one vmapped signal
   evaluation; the best few start the Levenberg–Marquardt refinement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..acquisition import Acquisition
from ..priors import AxisUniform, Prior
from . import chart

#: b-values (ms/µm²) up to which the tensor fit uses the measurements (kurtosis small below).
DTI_MAX_B = 1.5
#: Normalised signals are clipped from below before the log, so noise-floor zeros stay finite.
_LOG_FLOOR = 1e-3


def dti_design(acquisition: Acquisition, max_b: float = DTI_MAX_B) -> np.ndarray | None:
    """Pseudo-inverse (7, n_meas) of the log-linear tensor design, zero on unused measurements.

    Uses measurements with b ≤ `max_b` (ms/µm²); all of them if those cannot determine a tensor.
    Returns None when no tensor is identifiable (fewer than 6 independent b-tensor directions):
    the caller then seeds axes from the pole.
    """
    B = np.asarray(acquisition.btensor, dtype=np.float64)
    X = np.stack([np.ones(len(B)), -B[:, 0, 0], -B[:, 1, 1], -B[:, 2, 2],
                  -2 * B[:, 0, 1], -2 * B[:, 0, 2], -2 * B[:, 1, 2]], axis=1)
    for rows in (acquisition.bvalues <= max_b, np.ones(len(B), dtype=bool)):
        if np.linalg.matrix_rank(X[rows], tol=1e-6 * max(1.0, np.abs(X).max())) == 7:
            pinv = np.zeros((7, len(B)))
            pinv[:, rows] = np.linalg.pinv(X[rows])
            return pinv
    return None


def dti_principal_axes(pinv: jax.Array, signals: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Eigenvectors (V, 3), largest eigenvalue first, of the log-linear tensor fit of normalised `signals` (V, n)."""
    coef = jnp.log(jnp.maximum(signals, _LOG_FLOOR)) @ pinv.T  # (V, 7)
    dxx, dyy, dzz, dxy, dxz, dyz = (coef[:, i] for i in range(1, 7))
    D = jnp.stack([jnp.stack([dxx, dxy, dxz], -1), jnp.stack([dxy, dyy, dyz], -1),
                   jnp.stack([dxz, dyz, dzz], -1)], axis=-2)
    _, vecs = jnp.linalg.eigh(D)  # ascending eigenvalues
    return vecs[..., :, 2], vecs[..., :, 1], vecs[..., :, 0]


def axis_centres(prior: Prior, pinv: jax.Array | None, signals: jax.Array):
    """Chart centres (V, 3) for every axis of `prior`, and an alternative set.

    Centres: the tensor's principal eigenvector for the first axis, its second eigenvector for a
    second one, the pole ẑ when no tensor is available. Alternative: the same, but the first axis at
    the tensor's smallest eigenvector, which is the fibre axis when the signal around it is oblate
    (a zeppelin with d_perp > d_par, allowed by e.g. AxCaliber's prior). Both are scored.
    """
    names = chart.axis_names(prior)
    if not names:
        return {}, {}
    n_vox = signals.shape[0]
    if pinv is None:
        pole = jnp.zeros((n_vox, 3), signals.dtype).at[:, 2].set(1.0)
        return {n: pole for n in names}, {n: pole for n in names}
    e1, e2, e3 = dti_principal_axes(pinv, signals)
    seeds = [e1, e2]
    centres = {n: chart.canonical_axis(seeds[min(i, 1)]) for i, n in enumerate(names)}
    alternative = dict(centres)
    alternative[names[0]] = chart.canonical_axis(e3)
    return centres, alternative


def candidate_points(prior: Prior, n: int, key) -> jax.Array:
    """n fixed candidates (n, dim) in the chart, drawn from the prior, every axis at its centre (z = 0).

    The first candidate is the prior's centre point (mid-box scalars, equal fractions).
    """
    draws = prior.sample(key, n)
    centres = {name: jnp.zeros((n, 3)).at[:, 2].set(1.0) for name in chart.axis_names(prior)}
    z = chart.to_unconstrained(prior, draws, centres)
    z = z.at[0].set(0.0)
    for f, s in zip(prior.factors, prior.slices):
        if isinstance(f, AxisUniform):
            z = z.at[:, s].set(0.0)
    return z


#: Smallest fraction a variable-projection start gets (its log-ratio chart coordinate stays finite).
_FRACTION_FLOOR = 1e-3


def linear_fractions(model, acquisition: Acquisition) -> slice | None:
    """Chart slice of the simplex fractions if `model`'s signal is Σ_k f_k E_k with E_k independent
    of the fractions (so they can be solved for linearly), else None.

    True for SANDI, ball_stick, AxCaliber; false for NODDI (its extra-neurite d_perp is derived
    from ndi by tortuosity), for custom weights, or when some fraction is fixed. Checked on the
    acquisition by evaluating the compartments at one prior draw with two different fraction sets.
    """
    from ..models.composite import MultiCompartmentModel
    from ..priors import Dirichlet

    if not isinstance(model, MultiCompartmentModel) or model._weights_fn is not None:
        return None
    names = model.fraction_names
    if len(names) < 2:
        return None
    prior = model.prior
    found = [s for f, s in zip(prior.factors, prior.slices) if isinstance(f, Dirichlet) and f.names == names[:-1]]
    if len(found) != 1 or set(names) & set(model.tied) | set(names) & set(model.derived):
        return None
    draw = {k: v[0] for k, v in prior.sample(jax.random.key(0), 1).items()}
    other = dict(draw)
    for k in names[:-1]:
        other[k] = 0.5 * draw[k]
    a = model.compartment_signals(acquisition, draw)
    b = model.compartment_signals(acquisition, other)
    if any(not np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a):
        return None
    return found[0]


def best_fractions(cols: jax.Array, y: jax.Array, fit_s0: bool):
    """Fractions (N, K) on the simplex (each ≥ 1e-3) that best fit y (n,) as Σ_k f_k cols[:, :, k].

    cols (N, n, K): the K compartment signals of N candidates. Without fit_s0 the fractions sum to 1
    (eliminating the last one); with it, non-negative weights w are fitted and S0 = Σ w returned as
    the scale (N,), else None. Least squares, then clipped to the floor and renormalised (a start,
    not an estimate)."""
    eps = 1e3 * jnp.finfo(cols.dtype).eps
    if fit_s0:
        A, rhs = cols, jnp.broadcast_to(y, cols.shape[:2])
    else:
        A, rhs = cols[..., :-1] - cols[..., -1:], y[None, :] - cols[..., -1]
    AtA = jnp.einsum("nmi,nmj->nij", A, A)
    k = AtA.shape[-1]
    reg = eps * jnp.trace(AtA, axis1=-2, axis2=-1)[:, None, None] * jnp.eye(k, dtype=A.dtype)[None]
    w = jnp.linalg.solve(AtA + reg, jnp.einsum("nmi,nm->ni", A, rhs)[..., None])[..., 0]
    if fit_s0:
        w = jnp.maximum(w, 0.0)
        scale = jnp.maximum(jnp.sum(w, axis=1), 1e-30)
        f = w / scale[:, None]
    else:
        scale = None
        f = jnp.concatenate([w, 1.0 - jnp.sum(w, axis=1, keepdims=True)], axis=1)
    f = jnp.clip(f, _FRACTION_FLOOR, 1.0)
    return f / jnp.sum(f, axis=1, keepdims=True), scale

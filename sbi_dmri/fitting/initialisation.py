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

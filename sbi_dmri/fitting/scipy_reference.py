"""An independent reference fit of ball_stick with scipy, for benchmarks and tests of `fit_nlls`.

Deliberately shares nothing with `fit_nlls` (no prior chart, no JAX): bounded trust-region
least squares in spherical angles, started from a log-linear tensor fit's principal eigenvector
plus random starts, best cost kept. Slow (one voxel at a time); it is a yardstick, not a tool.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from ..acquisition import Acquisition


def scipy_ball_stick_fit(
    acq: Acquisition, y, *, n_random_starts: int = 3, seed: int = 0, xtol: float = 1e-8, ftol: float = 1e-8
) -> dict[str, np.ndarray]:
    """Fit normalised signals `y` (n_voxels, n_meas) with ball_stick; return constrained parameters.

    Args:
        acq: the acquisition (b in ms/µm²).
        y: S/S0 per voxel.
        n_random_starts: random starts besides the tensor-seeded one (d_par, d_iso µm²/ms and f random).
        seed: seed of the random starts.
        xtol, ftol: scipy `least_squares` tolerances (its defaults are 1e-8).
    """
    b, g = np.asarray(acq.bvalues), np.asarray(acq.directions)
    rng = np.random.default_rng(seed)
    low = b <= 1.5
    X = np.stack([np.ones(low.sum()), *(-b[low] * g[low, i] * g[low, j] * (1 if i == j else 2)
                                         for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)))], axis=1)

    def model(p):
        th, ph, dpar, diso, f = p
        n = np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
        return f * np.exp(-b * dpar * (g @ n) ** 2) + (1 - f) * np.exp(-b * diso)

    bounds = ([-np.inf, -np.inf, 0.1, 0.1, 0.0], [np.inf, np.inf, 3.0, 3.0, 1.0])
    out = []
    for yv in np.asarray(y):
        c = np.linalg.lstsq(X, np.log(np.maximum(yv[low], 1e-3)), rcond=None)[0]
        D = np.array([[c[1], c[4], c[5]], [c[4], c[2], c[6]], [c[5], c[6], c[3]]])
        e1 = np.linalg.eigh(D)[1][:, 2]
        th0, ph0 = np.arccos(np.clip(e1[2], -1, 1)), np.arctan2(e1[1], e1[0])
        starts = [[th0, ph0, 1.7, 1.0, 0.5]] + [
            [th0, ph0, *rng.uniform([0.2, 0.2, 0.05], [2.9, 2.9, 0.95])] for _ in range(n_random_starts)]
        fits = [least_squares(lambda p: model(p) - yv, s, bounds=bounds, method="trf", x_scale="jac",
                              xtol=xtol, ftol=ftol) for s in starts]
        th, ph, *rest = min(fits, key=lambda f: f.cost).x
        out.append([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th), *rest])
    out = np.array(out)
    return {"orientation": out[:, :3], "d_par": out[:, 3], "d_iso": out[:, 4], "f_stick": out[:, 5]}

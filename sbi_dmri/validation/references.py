"""Reference values the Monte Carlo is checked against, independent of the package's kernels.

- MISST matrix-formalism signals: `$SBI_DMRI_MISST_DIR`, else `shared/data/misst` beside the repository
  (where the project's shared specification lives), else `/work/shared/data/misst`.
- The permeable slab stack: exact eigenmodes of the alternating (even/odd slab) mode,
  λ tan(λL/2) = 2κ/D, and the exact population difference p(t) for walkers starting uniformly
  in the even slabs.
- Mitra's short-time limit D(t)/D0 = 1 − (4/(3√π)) (S/V) √(D0 t) / d (Mitra et al., PRL 68:3555, 1992).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.optimize import brentq



def _find_misst_dir() -> Path:
    if os.environ.get("SBI_DMRI_MISST_DIR"):
        return Path(os.environ["SBI_DMRI_MISST_DIR"])
    beside_repo = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "misst"
    for candidate in (beside_repo, Path("/work/shared/data/misst")):
        if candidate.is_dir():
            return candidate
    return beside_repo  # missing: misst_signal's error names the place it looked


MISST_DIR = _find_misst_dir()
#: The MISST b grid: numpy.linspace(1, 3e9, 100) s/m², in ms/µm².
MISST_B = np.linspace(1.0, 3e9, 100) * 1e-9
MISST_SETTINGS = {"diffusivity": 2.0, "radius": 5.0, "Delta": 40.0}


def misst_signal(geometry: str, delta: float) -> np.ndarray:
    """The 100 MISST signals for geometry "cylinder" | "sphere" and δ = 1 | 30 ms."""
    name = f"misst_{geometry}_signal_smalldelta_{int(delta)}ms_bigdelta_40ms_radius_5um.txt"
    return np.loadtxt(MISST_DIR / name)


def slab_eigenvalues(spacing: float, kappa: float, diffusivity: float, n_modes: int = 50) -> np.ndarray:
    """Roots λ_n (1/µm) of λ tan(λL/2) = 2κ/D, one per branch (nπ/L·2 spacing), ascending."""
    h = 2.0 * kappa / diffusivity
    half = spacing / 2.0
    roots = []
    for n in range(n_modes):
        lo = n * np.pi / half + 1e-12
        hi = (n + 0.5) * np.pi / half - 1e-12
        roots.append(brentq(lambda lam: lam * np.tan(lam * half) - h, lo, hi))
    return np.asarray(roots)


def slab_population_difference(t, spacing: float, kappa: float, diffusivity: float, n_modes: int = 200):
    """p(t) = P(even slab) − P(odd slab) for walkers starting uniform in even slabs (exact series)."""
    lam = slab_eigenvalues(spacing, kappa, diffusivity, n_modes)
    L = spacing
    integral = 2.0 * np.sin(lam * L / 2.0) / lam
    norm = L / 2.0 + np.sin(lam * L) / (2.0 * lam)
    weights = integral**2 / (L * norm)
    t = np.atleast_1d(np.asarray(t, np.float64))
    return np.sum(weights[None, :] * np.exp(-diffusivity * lam[None, :] ** 2 * t[:, None]), axis=1)


def slab_kappa_from_population(p: float, t: float, spacing: float, diffusivity: float) -> float:
    """The permeability whose exact p(t) equals the measured p (inverts the monotone series)."""
    f = lambda k: slab_population_difference(t, spacing, k, diffusivity)[0] - p  # noqa: E731
    return brentq(f, 1e-6, 50.0)


def mitra(t, diffusivity: float, surface_to_volume: float, dims: int):
    """Short-time apparent diffusivity ratio D(t)/D0 (Mitra et al. 1992)."""
    return 1.0 - 4.0 / (3.0 * np.sqrt(np.pi)) * surface_to_volume * np.sqrt(diffusivity * np.asarray(t)) / dims

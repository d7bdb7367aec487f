"""Fit a NIfTI volume voxel by voxel and write parameter maps (the library side of `sbi-dmri fit`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import models
from ..io import load_dwi, save_maps, to_volume
from .nlls import fit_nlls


def fit_volume(
    model_name: str,
    dwi_path,
    bval_path,
    bvec_path,
    *,
    delta: float,
    Delta: float,
    out_dir,
    mask_path=None,
    TE: float | None = None,
    noise: str = "gaussian",
    sigma: float | None = None,
    s0: str | None = "b0",
    model_options: Mapping[str, float] | None = None,
    n_starts: int = 1,
    chunk_size: int = 1024,
    progress: bool = True,
) -> list[str]:
    """Load a 4D DWI, fit `model_name` in the mask, write `<out_dir>/<param>.nii.gz` maps.

    Maps: one per free parameter (orientations as a 4D (X, Y, Z, 3) map of unit axes with n_z ≥ 0),
    plus `s0` (input units), `loss`, `converged` (1/0) and `fitted` (1/0: in the mask, finite, S0 > 0).
    Voxels outside the mask or skipped are NaN in the parameter maps.

    Args:
        model_name: registered model (`sbi-dmri models`); `model_options` fix its parameters
            (e.g. {"d_iso": 3.0}).
        dwi_path, bval_path, bvec_path: 4D NIfTI and FSL gradient files (b in s/mm²).
        delta, Delta: pulse duration and separation, ms; TE optional, ms.
        out_dir: output folder (created; writes are all-or-nothing).
        mask_path: optional 3D mask NIfTI.
        noise, sigma, s0, n_starts, chunk_size, progress: as in `fit_nlls` (σ in the DWI's units).
    Returns:
        The written paths.
    """
    vol = load_dwi(dwi_path, bval_path, bvec_path, delta=delta, Delta=Delta, TE=TE, mask_path=mask_path)
    if not vol.mask.any():
        raise ValueError(f"the mask {mask_path} is empty: no voxel to fit")
    model = models.get(model_name, **dict(model_options or {}))
    r = fit_nlls(model, vol.acquisition, vol.voxels(), noise=noise, sigma=sigma, s0=s0, n_starts=n_starts,
                 chunk_size=chunk_size, progress=progress)
    maps = {name: to_volume(v, vol.mask) for name, v in r.params.items()}
    maps["s0"] = to_volume(r.s0, vol.mask)
    maps["loss"] = to_volume(r.loss, vol.mask)
    maps["converged"] = to_volume(r.converged.astype(np.float32), vol.mask, fill=0.0)
    maps["fitted"] = to_volume(r.fitted.astype(np.float32), vol.mask, fill=0.0)
    return save_maps(out_dir, maps, vol.image)

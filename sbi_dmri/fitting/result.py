"""What a voxelwise fit returns."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FitResult:
    """Voxelwise estimates; every array has the leading (voxel) shape of the input signals.

    Attributes:
        params: name → estimate, in the model's units; scalars (...,), axes (..., 3) with n_z ≥ 0.
            NaN for voxels that were not fitted.
        loss: final objective: Σ residual² of the normalised signal (noise="gaussian"), or the
            negative Rician log-likelihood of the normalised signal (noise="rician"). NaN if not fitted.
        converged: the optimiser met its tolerance within its step budget and the loss is finite.
        fitted: voxel inside the mask with finite signals and a positive S0 (the others are skipped).
        s0: non-diffusion-weighted signal, in the input's unit (1 for s0=None); NaN if not fitted.
        sigma: noise σ of the normalised signal used by the Rician fit (given or estimated), else None.
        num_steps: optimiser steps taken (the last stage, for Rician the BFGS stage).
        restarted: voxels refitted from more starts because their least-squares loss stood out
            (`fit_nlls`'s n_restarts); None where not recorded.
    """

    params: dict[str, np.ndarray]
    loss: np.ndarray
    converged: np.ndarray
    fitted: np.ndarray
    s0: np.ndarray
    sigma: np.ndarray | None
    num_steps: np.ndarray
    restarted: np.ndarray | None = None

    @property
    def fraction_converged(self) -> float:
        """Share of fitted voxels whose optimiser converged."""
        n = int(self.fitted.sum())
        return float(self.converged[self.fitted].sum() / n) if n else 0.0

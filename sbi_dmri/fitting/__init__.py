"""Classical voxelwise estimators: Levenberg–Marquardt NLLS and blackjax NUTS reference posteriors.

- `fit_nlls(model, acquisition, signals, ...)`: tensor-seeded, brute-force-initialised
  Levenberg–Marquardt in the prior's unconstrained chart (Rician BFGS stage optional).
- `fit_volume(model_name, dwi, bval, bvec, ...)`: the same on a NIfTI volume, writing maps.
- `sample_posterior(model, acquisition, signals, ...)`: NUTS draws per voxel, with split-R̂ and ESS.
"""

from .mcmc import PosteriorSamples as PosteriorSamples
from .mcmc import sample_posterior as sample_posterior
from .nlls import fit_nlls as fit_nlls
from .result import FitResult as FitResult
from .volume import fit_volume as fit_volume

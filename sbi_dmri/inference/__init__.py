"""Amortized inference on whole volumes: posterior maps with per-voxel trust flags.

    from sbi_dmri.inference import infer_volume
    summary = infer_volume("ball_stick", "dwi.nii.gz", "dwi.bval", "dwi.bvec", mask="mask.nii.gz",
                           delta=10.6, Delta=43.1, samples=100, out_dir="maps")

`infer_voxels` is the file-free core (arrays in, per-voxel summaries out) used by the demo and the
benchmark. By default both importance-correct the network's posterior with the analytic likelihood
(`importance_correction`); `CorrectedPosterior` (`PretrainedPosterior.corrected_posterior`) is the same
for a batch of voxels in Python.
"""

from .engine import KHAT_FLAG as KHAT_FLAG
from .engine import VoxelMaps as VoxelMaps
from .engine import infer_voxels as infer_voxels
from .volume import check_protocol as check_protocol
from .volume import infer_volume as infer_volume
from .corrected_posterior import CorrectedPosterior as CorrectedPosterior

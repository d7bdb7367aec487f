"""Volume I/O: 4D diffusion NIfTI + FSL gradient files + mask in; parameter maps out (atomically)."""

from .nifti import DWIVolume as DWIVolume
from .nifti import load_dwi as load_dwi
from .nifti import load_mask as load_mask
from .nifti import save_maps as save_maps
from .nifti import to_volume as to_volume
from .nifti import to_voxels as to_voxels

"""NIfTI volumes with nibabel.

Reading refuses inconsistent inputs with a `ValueError` naming the problem (wrong dimensionality,
volume count ≠ number of b-values, mask shape mismatch). Writing is atomic and all-or-nothing:
every map goes to a temporary name in the output folder first and is renamed only once all of
them are written, so an error never leaves a partial set of maps behind.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping

import nibabel as nib
import numpy as np

from ..acquisition import Acquisition


@dataclasses.dataclass(frozen=True)
class DWIVolume:
    """A loaded diffusion volume.

    Attributes:
        data: (X, Y, Z, N) float32 signals (scanner units).
        acquisition: the matching `Acquisition` (N measurements).
        mask: (X, Y, Z) bool; all True when no mask was given.
        image: the nibabel image (affine and header for writing maps).
    """

    data: np.ndarray
    acquisition: Acquisition
    mask: np.ndarray
    image: nib.Nifti1Image

    @property
    def affine(self) -> np.ndarray:
        return self.image.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape[:3]

    def voxels(self) -> np.ndarray:
        """(n_masked, N) signals of the voxels inside the mask, in C order."""
        return to_voxels(self.data, self.mask)


def _load(path) -> nib.spatialimages.SpatialImage:
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")
    try:
        return nib.load(path)
    except Exception as e:  # nibabel raises several types for unreadable files
        raise ValueError(f"cannot read {path} as NIfTI: {e}") from None


def load_mask(path, shape: tuple[int, int, int]) -> np.ndarray:
    """A 3D mask (nonzero = inside) whose shape must equal `shape`."""
    m = np.asanyarray(_load(path).dataobj)
    if m.ndim == 4 and m.shape[3] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ValueError(f"mask {path} has shape {m.shape}, but the DWI volume is {tuple(shape)}")
    return np.asarray(m) != 0


def load_dwi(dwi_path, bval_path, bvec_path, *, delta, Delta, TE=None, mask_path=None) -> DWIVolume:
    """Load a 4D DWI NIfTI with FSL gradients (b in s/mm²) and an optional mask.

    Args:
        dwi_path: 4D NIfTI (X, Y, Z, N).
        bval_path, bvec_path: FSL gradient files (see `Acquisition.from_fsl`).
        delta, Delta: pulse duration and separation in ms.
        TE: optional echo time in ms.
        mask_path: optional 3D NIfTI mask of the same spatial shape.
    """
    img = _load(dwi_path)
    if len(img.shape) != 4:
        raise ValueError(f"{dwi_path} must be a 4D volume (X, Y, Z, N), got shape {img.shape}")
    acq = Acquisition.from_fsl(bval_path, bvec_path, delta=delta, Delta=Delta, TE=TE)
    if img.shape[3] != acq.n_measurements:
        raise ValueError(
            f"{dwi_path} has {img.shape[3]} volumes but {bval_path} lists {acq.n_measurements} b-values"
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = np.ones(img.shape[:3], bool) if mask_path is None else load_mask(mask_path, img.shape[:3])
    return DWIVolume(data=data, acquisition=acq, mask=mask, image=img)


def to_voxels(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z, ...) → (n_masked, ...) in C order."""
    return np.asarray(volume)[np.asarray(mask, bool)]


def to_volume(values: np.ndarray, mask: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """(n_masked, ...) → (X, Y, Z, ...), `fill` outside the mask."""
    values = np.asarray(values)
    out = np.full(mask.shape + values.shape[1:], fill, dtype=np.float32)
    out[np.asarray(mask, bool)] = values
    return out


def save_maps(out_dir, maps: Mapping[str, np.ndarray], reference: nib.spatialimages.SpatialImage) -> list[str]:
    """Write each map as `<out_dir>/<name>.nii.gz` (float32, the reference's affine and header).

    All-or-nothing: on any error no new file is left in `out_dir`. Returns the written paths.

    Args:
        out_dir: output folder (created if missing).
        maps: name → (X, Y, Z) or (X, Y, Z, K) array matching the reference's spatial shape.
        reference: the image whose affine and header the maps inherit.
    """
    shape = tuple(reference.shape[:3])
    for name, arr in maps.items():
        if tuple(np.shape(arr)[:3]) != shape:
            raise ValueError(f"map {name!r} has shape {np.shape(arr)}, expected spatial shape {shape}")
        if not name or os.sep in name or name.startswith("."):
            raise ValueError(f"invalid map name {name!r}")
    os.makedirs(out_dir, exist_ok=True)
    staged: list[tuple[str, str]] = []
    try:
        for name, arr in maps.items():
            arr = np.asarray(arr, dtype=np.float32)
            header = reference.header.copy()
            header.set_data_dtype(np.float32)
            img = nib.Nifti1Image(arr, reference.affine, header)
            final = os.path.join(out_dir, f"{name}.nii.gz")
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".nii.gz", dir=out_dir)
            os.close(fd)
            staged.append((tmp, final))
            nib.save(img, tmp)
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)
    return [final for _, final in staged]

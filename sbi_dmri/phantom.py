"""Synthetic phantoms with known parameter maps, written as a NIfTI dataset.

The phantom is a slab of tissue-like structure: a disk-shaped "brain" mask; f_stick high in two
curved "tracts" whose orientation follows them; d_par, d_iso varying smoothly; free water at the
rim. Every map lies inside the model's prior bounds, and signals come from the model's own
closed form with Rician noise, so truth is exact and known.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np

from .acquisition import Acquisition, write_bvals_bvecs
from .models.base import Model
from .noise import add_noise


@dataclasses.dataclass(frozen=True)
class Phantom:
    """Truth maps (X, Y, Z[, 3]), mask (X, Y, Z), noisy signals (X, Y, Z, N) with S0 = `s0`."""

    truth: dict[str, np.ndarray]
    mask: np.ndarray
    signals: np.ndarray
    acquisition: Acquisition
    snr: float
    s0: float

    def write(self, folder: str, *, voxel_size_mm: float = 2.0) -> dict[str, str]:
        """Write dwi.nii.gz, dwi.bval, dwi.bvec, mask.nii.gz and truth_<param>.nii.gz into `folder`."""
        os.makedirs(folder, exist_ok=True)
        affine = np.diag([voxel_size_mm] * 3 + [1.0])
        paths = {k: os.path.join(folder, f) for k, f in
                 [("dwi", "dwi.nii.gz"), ("bval", "dwi.bval"), ("bvec", "dwi.bvec"), ("mask", "mask.nii.gz")]}
        nib.save(nib.Nifti1Image(self.signals.astype(np.float32), affine), paths["dwi"])
        nib.save(nib.Nifti1Image(self.mask.astype(np.uint8), affine), paths["mask"])
        write_bvals_bvecs(paths["bval"], paths["bvec"], self.acquisition.bvalues, self.acquisition.directions)
        for name, arr in self.truth.items():
            p = os.path.join(folder, f"truth_{name}.nii.gz")
            nib.save(nib.Nifti1Image(arr.astype(np.float32), affine), p)
            paths[f"truth_{name}"] = p
        return paths


def ball_stick_maps(shape: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Truth maps for `ball_stick` on a grid (X, Y, Z): two crossing curved tracts in a disk."""
    X, Y, Z = shape
    x, y, z = np.meshgrid(np.linspace(-1, 1, X), np.linspace(-1, 1, Y), np.linspace(-1, 1, max(Z, 1)), indexing="ij")
    r = np.hypot(x, y)
    mask = r <= 0.95
    # Tract 1: an arc of radius 0.6 about the origin (orientation tangential); tract 2: a band along y.
    d1 = np.abs(r - 0.6)
    d2 = np.abs(x + 0.1 * np.sin(3 * y))
    w1, w2 = np.exp(-(d1 / 0.15) ** 2), np.exp(-(d2 / 0.12) ** 2)
    f_stick = 0.15 + 0.6 * np.maximum(w1, w2)
    tangent = np.stack([-y, x, 0.35 * z], -1) / np.maximum(r, 1e-6)[..., None]
    along_y = np.stack([0.3 * np.cos(3 * y), np.ones_like(y), 0.2 * z], -1)
    n = np.where((w1 >= w2)[..., None], tangent, along_y)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(n[..., 2:3] < 0, -n, n)
    d_par = 1.6 + 0.4 * np.exp(-(r / 0.5) ** 2) + 0.2 * z
    d_iso = 2.0 + 0.9 * np.clip((r - 0.7) / 0.25, 0, 1)  # toward free water at the rim
    truth = {"orientation": n, "d_par": d_par, "d_iso": d_iso, "f_stick": f_stick}
    return truth, mask


def make_phantom(
    model: Model, acquisition: Acquisition, *, shape=(40, 40, 4), snr: float = 30.0, s0: float = 1000.0, seed: int = 0
) -> Phantom:
    """A ball_stick phantom measured with `acquisition`, Rician noise at `snr` (S0/σ).

    Args:
        model: the `ball_stick` model (or one with the same parameters).
        acquisition: the protocol.
        shape: grid size (X, Y, Z).
        snr: S0/σ.
        s0: signal at b = 0 (scanner units).
        seed: noise seed.
    """
    truth, mask = ball_stick_maps(tuple(shape))
    missing = set(model.parameter_names) - set(truth)
    if missing:
        raise ValueError(f"the phantom defines {sorted(truth)}; model {model.name!r} also needs {sorted(missing)}")
    flat = {k: jnp.asarray(v.reshape((-1,) + v.shape[3:]), jnp.float32) for k, v in truth.items()}
    e = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))(acquisition, flat)
    noisy = add_noise(jax.random.PRNGKey(seed), s0 * e, snr, kind="rician", s0=s0)
    signals = np.array(noisy).reshape(tuple(shape) + (acquisition.n_measurements,))
    signals[~mask] = 0.0
    truth = {k: np.where(mask[..., None] if v.ndim == 4 else mask, v, np.nan) for k, v in truth.items()}
    return Phantom(truth=truth, mask=mask, signals=signals, acquisition=acquisition, snr=snr, s0=s0)

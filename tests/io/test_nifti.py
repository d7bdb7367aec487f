"""NIfTI I/O: loading with validation, maps written float32 with the input's geometry, atomically."""

import os

import nibabel as nib
import numpy as np
import pytest

from sbi_dmri.acquisition import write_bvals_bvecs
from sbi_dmri.io import load_dwi, save_maps, to_volume, to_voxels

AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])


def _write_case(tmp_path, n_vol=4, n_b=4, shape=(3, 4, 2), mask_shape=None):
    data = np.random.default_rng(0).uniform(100, 200, size=shape + (n_vol,)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, AFFINE), tmp_path / "dwi.nii.gz")
    b = np.array([0.0, 1.0, 2.0, 3.0, 1.0, 2.0])[:n_b]
    g = np.tile([[0.0, 0.0, 1.0]], (n_b, 1))
    write_bvals_bvecs(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", b, g)
    if mask_shape:
        m = np.zeros(mask_shape, np.uint8)
        m[1:, :2] = 1
        nib.save(nib.Nifti1Image(m, AFFINE), tmp_path / "mask.nii.gz")
    return data


def _load(tmp_path, mask=False):
    return load_dwi(
        tmp_path / "dwi.nii.gz", tmp_path / "dwi.bval", tmp_path / "dwi.bvec", delta=10.0, Delta=30.0,
        mask_path=tmp_path / "mask.nii.gz" if mask else None,
    )


def test_load_and_voxel_round_trip(tmp_path):
    data = _write_case(tmp_path, mask_shape=(3, 4, 2))
    vol = _load(tmp_path, mask=True)
    assert vol.data.dtype == np.float32 and vol.acquisition.n_measurements == 4
    np.testing.assert_array_equal(vol.data, data)
    vox = vol.voxels()
    assert vox.shape == (int(vol.mask.sum()), 4)
    back = to_volume(vox, vol.mask)
    np.testing.assert_array_equal(back[vol.mask], data[vol.mask])
    assert np.all(np.isnan(back[~vol.mask]))
    np.testing.assert_array_equal(to_voxels(back, vol.mask), vox)


@pytest.mark.parametrize(
    "case, message",
    [
        (dict(n_vol=5), "has 5 volumes but"),
        (dict(mask_shape=(3, 4, 3)), "mask"),
    ],
)
def test_inconsistent_inputs_are_refused(tmp_path, case, message):
    _write_case(tmp_path, **case)
    with pytest.raises(ValueError, match=message):
        _load(tmp_path, mask="mask_shape" in case)


def test_3d_dwi_is_refused(tmp_path):
    _write_case(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 2), np.float32), AFFINE), tmp_path / "dwi.nii.gz")
    with pytest.raises(ValueError, match="must be a 4D volume"):
        _load(tmp_path)


def test_save_maps_keeps_geometry_and_is_float32(tmp_path):
    _write_case(tmp_path)
    vol = _load(tmp_path)
    maps = {"f_stick": np.full((3, 4, 2), 0.5), "orientation": np.ones((3, 4, 2, 3))}
    paths = save_maps(tmp_path / "out", maps, vol.image)
    assert sorted(os.listdir(tmp_path / "out")) == ["f_stick.nii.gz", "orientation.nii.gz"] == sorted(
        os.path.basename(p) for p in paths
    )
    img = nib.load(tmp_path / "out" / "orientation.nii.gz")
    assert img.shape == (3, 4, 2, 3) and img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, AFFINE)


def test_save_maps_is_all_or_nothing(tmp_path):
    _write_case(tmp_path)
    vol = _load(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="expected spatial shape"):
        save_maps(out, {"a": np.zeros((3, 4, 2)), "b": np.zeros((2, 2, 2))}, vol.image)
    assert not out.exists() or os.listdir(out) == []
    # A failure while writing (not only while checking) also leaves nothing behind.
    with pytest.raises(Exception):
        save_maps(out, {"a": np.zeros((3, 4, 2)), "b": np.full((3, 4, 2), "x", dtype=object)}, vol.image)
    assert os.listdir(out) == []

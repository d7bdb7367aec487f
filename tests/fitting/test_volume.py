"""`fit_volume` / `sbi-dmri fit`: NIfTI in, maps out, mask and skipped voxels respected."""

import jax
import nibabel as nib
import numpy as np

from sbi_dmri import models
from sbi_dmri.acquisition import write_bvals_bvecs
from sbi_dmri.cli import main

from .helpers import angle_deg, ball_stick_truths, three_shell


def test_fit_cli_writes_maps_that_recover_the_phantom(tmp_path):
    m, acq = models.get("ball_stick"), three_shell()
    truth = ball_stick_truths(np.random.default_rng(0), 12, f=(0.4, 0.8), d_par=(1.2, 2.5), d_iso=(0.5, 2.5))
    sig = 300.0 * np.asarray(jax.vmap(m.signal, in_axes=(None, 0))(acq, truth))
    data = sig.reshape(2, 3, 2, -1).astype(np.float32)
    data[1, 2, 1] = np.nan  # a corrupt voxel inside the mask
    mask = np.ones((2, 3, 2), np.uint8)
    mask[0, 0, 0] = 0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    write_bvals_bvecs(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", acq.bvalues, acq.directions)
    out = tmp_path / "maps"
    rc = main(["fit", "--model", "ball_stick", "--dwi", str(tmp_path / "dwi.nii.gz"), "--bval",
               str(tmp_path / "dwi.bval"), "--bvec", str(tmp_path / "dwi.bvec"), "--mask",
               str(tmp_path / "mask.nii.gz"), "--delta", "10.6", "--Delta", "43.1", "--out", str(out)])
    assert rc in (0, None)
    f = nib.load(out / "f_stick.nii.gz")
    assert np.allclose(f.affine, affine)
    f = np.asarray(f.dataobj).reshape(-1)
    orient = np.asarray(nib.load(out / "orientation.nii.gz").dataobj).reshape(-1, 3)
    fitted = np.asarray(nib.load(out / "fitted.nii.gz").dataobj).reshape(-1)
    ok = np.ones(12, bool)
    ok[[0, 11]] = False  # outside the mask, NaN signal
    assert np.all(fitted[ok] == 1) and np.all(fitted[~ok] == 0) and np.isnan(f[~ok]).all()
    np.testing.assert_allclose(f[ok], np.asarray(truth["f_stick"])[ok], atol=2e-3)
    assert angle_deg(orient[ok], truth["orientation"][ok]).max() < 0.5

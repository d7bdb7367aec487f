"""Whole-volume inference: NIfTI in, posterior maps out. `infer_volume(model, dwi, bval, bvec, ...)`.

Written into `out_dir` (all-or-nothing through `io.save_maps`: an error leaves no new file), for each
free parameter `<p>` of the network's model:

    <p>_mean.nii.gz         posterior mean (Monte Carlo over `samples` draws; the point head if
                            samples = 0); orientation: (X, Y, Z, 3) axial mean, unit, n_z ≥ 0.
                            By default the posterior is the network's, importance-corrected by the
                            analytic likelihood (`inference.importance_correction`; correct=False:
                            the network's own draws)
    <p>_std.nii.gz          posterior sd; orientation: RMS angle to the mean axis, degrees
    <p>_q025/_q975.nii.gz   2.5 % / 97.5 % quantiles; orientation: quantiles of that angle, degrees
    <p>_width_ratio.nii.gz  posterior sd / prior sd (orientation: RMS angles): near 1 means the data do
                            not inform the parameter, and its point estimate must not be read alone
    trust_khat.nii.gz       PSIS Pareto k̂ of the importance weights (see `inference.engine`)
    trust_flag.nii.gz       0 trusted; 1 k̂ > 0.7 (posterior unreliable here: few effective draws);
                            2 unusable signals (NaN/inf or b = 0 signal ≤ 0; every map is NaN there)

Outside the mask every map is NaN. The acquisition must belong to the network's training protocol
family; otherwise a ValueError says what differs, unless `force=True` (then a warning is recorded in
the returned summary: the network extrapolates and its calibration is unknown there).
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..io.nifti import DWIVolume, load_dwi, save_maps, to_volume
from .engine import KHAT_FLAG, infer_voxels

#: trust_flag codes.
TRUSTED, UNRELIABLE, UNUSABLE = 0, 1, 2


def check_protocol(net, acquisition, *, force: bool = False) -> list[str]:
    """Raise ValueError if `acquisition` is outside the network's training family, unless `force`.

    Returns the warnings (the refusal message when forced).
    """
    try:
        net.protocol.check(acquisition)
    except ValueError as e:
        if not force:
            raise ValueError(f"{e}. The network would extrapolate silently; pass force=True (sbi-dmri infer "
                             "--force) to run it anyway.") from None
        return [f"forced outside the training protocol family (calibration unknown): {e}"]
    return []


def infer_volume(model, dwi, bval=None, bvec=None, *, mask=None, delta=None, Delta=None, TE=None, samples: int = 100,
                 out_dir, force: bool = False, chunk_size: int = 2048, seed: int = 0, progress: bool = True,
                 trust: bool = True, snr=None, correct: bool = True, refine_steps: int | None = None,
                 min_ess: float = 0.0) -> dict:
    """Posterior maps of a DWI volume with a trained amortized network (module docstring).

    Args:
        model: a shipped network name ("ball_stick"), a checkpoint/workdir path, or a loaded
            `PretrainedPosterior`.
        dwi: 4D NIfTI path (X, Y, Z, N), or a loaded `io.DWIVolume` (then bval/bvec/mask/δ/Δ unused).
        bval, bvec: FSL gradient files (b in s/mm²).
        mask: optional 3D NIfTI mask path (nonzero = inside); default every voxel.
        delta, Delta: pulse duration and separation in ms. TE: echo time in ms (optional, unused
            by current networks).
        samples: posterior draws per voxel (0: point estimates only, no std/intervals/trust: the point head
            refined by `refine_steps` Gauss–Newton steps on the analytic likelihood).
        out_dir: output folder (created).
        force: run even if the protocol is outside the network's training family.
        chunk_size: voxels per compiled call (memory ≈ chunk × samples × N × 4 bytes).
        seed: PRNG seed of the draws.
        progress: tqdm progress bar.
        trust: compute the Pareto k̂ trust maps (needs ≥ 25 samples).
        snr: S0/σ of the scan (a number) for SNR-conditioned networks; None estimates it from the b = 0
            repeats (one σ for the masked volume, S0 per voxel), clipped to the training range.
        correct: importance-correct the network's posterior with the analytic likelihood
            (`inference.importance_correction`; half the draws from the network, half from a Gaussian
            adapted to their weights); False: the network's own draws only.
        refine_steps: with samples = 0, Gauss–Newton steps from the point head
            (`inference.point_refinement`; None: its default, 0: the head alone).
        min_ess: with `correct`, voxels with fewer effective draws than this are drawn again with 4 × `samples`
            draws (`infer_voxels`; 0: never; the model cards' calibrated intervals: samples 1000, min_ess 300).

    Returns: summary dict (files written, voxel counts, flagged voxels, timings in s, notes, warnings).
    """
    from ..pretrained import PretrainedPosterior, load_pretrained

    t0 = time.perf_counter()
    if isinstance(dwi, DWIVolume):
        vol = dwi
    else:
        missing = [n for n, v in (("bval", bval), ("bvec", bvec), ("delta", delta), ("Delta", Delta)) if v is None]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} for {dwi}")
        vol = load_dwi(dwi, bval, bvec, delta=delta, Delta=Delta, TE=TE, mask_path=mask)
    net = model if isinstance(model, PretrainedPosterior) else load_pretrained(os.fspath(model))
    warnings = check_protocol(net, vol.acquisition, force=force)
    if not np.any(vol.mask):
        raise ValueError("the mask selects no voxel")
    t_load = time.perf_counter() - t0

    res = infer_voxels(net, vol.voxels(), vol.acquisition, samples=samples, chunk_size=chunk_size, seed=seed,
                       trust=trust, progress=progress, snr=snr, correct=correct, refine_steps=refine_steps,
                       min_ess=min_ess)
    maps = {}
    for kind, d in (("mean", res.mean), ("std", res.std), ("q025", res.q025), ("q975", res.q975),
                    ("width_ratio", res.width_ratio)):
        for name, v in d.items():
            maps[f"{name}_{kind}"] = to_volume(v, vol.mask)
    flag = np.where(res.invalid, UNUSABLE, np.where(res.khat > KHAT_FLAG, UNRELIABLE, TRUSTED)).astype(np.float32)
    if samples > 0 and np.any(np.isfinite(res.khat)):
        maps["trust_khat"] = to_volume(res.khat.astype(np.float32), vol.mask)
    maps["trust_flag"] = to_volume(flag, vol.mask)

    t1 = time.perf_counter()
    paths = save_maps(out_dir, maps, vol.image)
    t_write = time.perf_counter() - t1
    k = res.khat[np.isfinite(res.khat)]
    return {
        "out_dir": os.path.abspath(out_dir), "files": paths, "network": net.source, "model": net.model_name,
        "parameters": list(net.parameter_names), "samples": samples,
        "n_voxels": int(vol.mask.sum()), "n_unusable": int(res.invalid.sum()),
        "n_unreliable": int(np.sum(flag == UNRELIABLE)), "khat_threshold": KHAT_FLAG,
        "n_corrected": int(np.sum(res.corrected)),
        "n_redrawn": int(np.sum(res.redrawn)) if res.redrawn is not None else 0,
        "khat_median": float(np.median(k)) if k.size else float("nan"),
        "seconds": {"load": t_load, "inference": res.seconds, "write": t_write, "total": time.perf_counter() - t0},
        "notes": res.notes, "warnings": warnings,
    }

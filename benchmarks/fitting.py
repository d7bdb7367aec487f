"""Voxelwise NLLS speed and accuracy: ball_stick and NODDI on hcp_3shell (96 measurements), SNR 50 Rician.

    python benchmarks/fitting.py [--voxels 4096] [--repeats 3] [--scipy-voxels 200]

Prints one table: voxels/s (median of `repeats` timed runs after a compiling warm-up), RMSE per
parameter against the truth and the median axis error, for Optimistix NLLS and, on a subset of the
same voxels, for a scipy `least_squares` multi-start reference (ball_stick only).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.optimize import least_squares

from sbi_dmri import models
from sbi_dmri.fitting import fit_nlls
from sbi_dmri.noise import add_noise
from sbi_dmri.protocols import load_protocol

# In-vivo-like truths (white/grey matter ranges), away from the bounds where models are degenerate.
TRUTH_RANGES = {
    "ball_stick": {"d_par": (1.0, 2.5), "d_iso": (0.5, 3.0), "f_stick": (0.3, 0.8)},
    "noddi": {"odi": (0.05, 0.6), "ndi": (0.2, 0.8), "f_iso": (0.0, 0.4)},
}


def truths(model, n, rng):
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = {k: rng.uniform(*r, n) for k, r in TRUTH_RANGES[model.name].items()}
    out["orientation"] = np.where(v[:, 2:3] < 0, -v, v)
    return out


def angle_deg(a, b):
    return np.degrees(np.arccos(np.clip(np.abs(np.sum(a * b, axis=-1)), 0, 1)))


def errors(est, truth):
    out = {k: float(np.sqrt(np.nanmean((est[k] - truth[k]) ** 2))) for k in truth if k != "orientation"}
    out["axis median °"] = float(np.nanmedian(angle_deg(est["orientation"], truth["orientation"])))
    return out


def scipy_ball_stick(acq, y, n_random_starts=3, seed=0):
    """Reference: bounded TRF in spherical angles, from the tensor's eigenvector and random starts."""
    b, g = acq.bvalues, acq.directions
    rng = np.random.default_rng(seed)
    low = b <= 1.5
    X = np.stack([np.ones(low.sum()), *(-b[low] * g[low, i] * g[low, j] * (1 if i == j else 2)
                                         for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)))], axis=1)

    def model(p):
        th, ph, dpar, diso, f = p
        n = np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
        return f * np.exp(-b * dpar * (g @ n) ** 2) + (1 - f) * np.exp(-b * diso)

    bounds = ([-np.inf, -np.inf, 0.1, 0.1, 0.0], [np.inf, np.inf, 3.0, 3.0, 1.0])
    out = []
    for yv in y:
        c = np.linalg.lstsq(X, np.log(np.maximum(yv[low], 1e-3)), rcond=None)[0]
        e1 = np.linalg.eigh(np.array([[c[1], c[4], c[5]], [c[4], c[2], c[6]], [c[5], c[6], c[3]]]))[1][:, 2]
        th0, ph0 = np.arccos(np.clip(e1[2], -1, 1)), np.arctan2(e1[1], e1[0])
        starts = [[th0, ph0, 1.7, 1.0, 0.5]] + [
            [th0, ph0, *rng.uniform([0.2, 0.2, 0.05], [2.9, 2.9, 0.95])] for _ in range(n_random_starts)]
        fits = [least_squares(lambda p: model(p) - yv, s, bounds=bounds, method="trf", x_scale="jac")
                for s in starts]
        th, ph, *rest = min(fits, key=lambda f: f.cost).x
        out.append([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th), *rest])
    out = np.array(out)
    return {"orientation": out[:, :3], "d_par": out[:, 3], "d_iso": out[:, 4], "f_stick": out[:, 5]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voxels", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scipy-voxels", type=int, default=200)
    ap.add_argument("--models", default="ball_stick,noddi")
    args = ap.parse_args()
    acq = load_protocol("hcp_3shell")
    rng = np.random.default_rng(0)
    print(f"# {jax.device_count()} {jax.devices()[0].platform} device(s); hcp_3shell (96 meas.), SNR 50 Rician, "
          f"{args.voxels} voxels, median of {args.repeats}")
    print(f"{'model':<11} {'method':<30} {'vox/s':>8}  {'conv':>5}  RMSE per parameter / median axis error")
    rows = _Rows()
    for name in args.models.split(","):
        if name not in models.available():
            print(f"# {name}: not registered, skipped")
            continue
        m = models.get(name)
        truth = truths(m, args.voxels, rng)
        mu = jax.vmap(m.signal, in_axes=(None, 0))(acq, {k: jax.numpy.asarray(v) for k, v in truth.items()})
        y = 1000.0 * np.asarray(add_noise(jax.random.key(1), mu, 50.0, "rician"))  # raw: S0 from the b0s
        fit_nlls(m, acq, y[:1024], progress=False)  # compile (chunk size 1024 = the timed runs')
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = fit_nlls(m, acq, y, progress=False)
            times.append(time.perf_counter() - t)
        rows.append((name, "optimistix LM", args.voxels / np.median(times), errors(r.params, truth),
                     r.fraction_converged))
        if name == "ball_stick" and args.scipy_voxels:
            k = args.scipy_voxels
            t = time.perf_counter()
            ref = scipy_ball_stick(acq, y[:k] / y[:k, acq.b0_mask].mean(1, keepdims=True))
            dt = time.perf_counter() - t
            sub = {kk: v[:k] for kk, v in truth.items()}
            rows.append((name, f"scipy TRF 4-start ({k} vox)", k / dt, errors(ref, sub), float("nan")))
            rows.append((name, f"optimistix LM, same {k} vox", float("nan"),
                         errors({kk: v[:k] for kk, v in r.params.items()}, sub), float("nan")))


class _Rows(list):
    """Prints each row as soon as it is measured (a long run that is cut short keeps its figures)."""

    def append(self, row):
        name, method, vps, err, conv = row
        e = ", ".join(f"{k} {v:.4f}" if "°" not in k else f"{k} {v:.2f}" for k, v in err.items())
        print(f"{name:<11} {method:<30} {vps:8.0f}  {conv:5.3f}  {e}", flush=True)
        super().append(row)


if __name__ == "__main__":
    main()

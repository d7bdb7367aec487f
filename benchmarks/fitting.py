"""Voxelwise NLLS speed and accuracy: ball_stick and NODDI on hcp_3shell (96 measurements), SNR 50 Rician.

    python benchmarks/fitting.py [--voxels 4096] [--repeats 3] [--scipy-voxels 200] [--variants "n_starts=1;n_starts=2"]

Prints one table: voxels/s (median of `repeats` timed runs after a compiling warm-up), RMSE per
parameter against the truth and the median axis error, for `fit_nlls` with its default options
(and each `--variants` option set, `;`-separated, `,` between options of one set) and, on a subset
of the same voxels, for a scipy `least_squares` multi-start reference (ball_stick only). Also the
share of voxels refitted from more starts (`restarted`) and the load average before each row.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from sbi_dmri import models
from sbi_dmri.diagnostics.recovery import angular_error_deg
from sbi_dmri.fitting import fit_nlls
from sbi_dmri.fitting.scipy_reference import scipy_ball_stick_fit
from sbi_dmri.noise import add_noise
from sbi_dmri.protocols import load_protocol

# In-vivo-like truths (white/grey matter ranges), away from the bounds where models are degenerate.
TRUTH_RANGES = {
    "ball_stick": {"d_par": (1.0, 2.5), "d_iso": (0.5, 3.0), "f_stick": (0.3, 0.8)},
    "noddi": {"odi": (0.05, 0.6), "ndi": (0.2, 0.8), "f_iso": (0.0, 0.4)},
}



def parse_variants(text: str) -> list[dict]:
    """"n_starts=1,n_restarts=0;n_starts=2" → [{"n_starts": 1, "n_restarts": 0}, {"n_starts": 2}]."""
    out = []
    for part in filter(None, text.split(";")):
        out.append({k.strip(): int(v) for k, v in (kv.split("=") for kv in part.split(","))})
    return out


def truths(model, n, rng):
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = {k: rng.uniform(*r, n) for k, r in TRUTH_RANGES[model.name].items()}
    out["orientation"] = np.where(v[:, 2:3] < 0, -v, v)
    return out


def errors(est, truth):
    out = {k: float(np.sqrt(np.nanmean((est[k] - truth[k]) ** 2))) for k in truth if k != "orientation"}
    out["axis median °"] = float(np.nanmedian(angular_error_deg(est["orientation"], truth["orientation"])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--voxels", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scipy-voxels", type=int, default=200)
    ap.add_argument("--models", default="ball_stick,noddi")
    ap.add_argument("--variants", default="", help="extra fit_nlls option sets, e.g. 'n_starts=1;n_starts=2'")
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
        for opts in [{}] + parse_variants(args.variants):
            load = os.getloadavg()[0]
            fit_nlls(m, acq, y[:1024], progress=False, **opts)  # compile (chunk size 1024 = the timed runs')
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                r = fit_nlls(m, acq, y, progress=False, **opts)
                times.append(time.perf_counter() - t)
            label = "LM " + (",".join(f"{k}={v}" for k, v in opts.items()) if opts else "defaults")
            err = errors(r.params, truth)
            err["restarted"] = float(np.mean(r.restarted))
            err["load"] = load
            rows.append((name, label, args.voxels / np.median(times), err, r.fraction_converged))
        if name == "ball_stick" and args.scipy_voxels:
            k = args.scipy_voxels
            t = time.perf_counter()
            ref = scipy_ball_stick_fit(acq, y[:k] / y[:k, acq.b0_mask].mean(1, keepdims=True))
            dt = time.perf_counter() - t
            sub = {kk: v[:k] for kk, v in truth.items()}
            rows.append((name, f"scipy TRF 4-start ({k} vox)", k / dt, errors(ref, sub), float("nan")))
            rows.append((name, f"LM defaults, same {k} vox", float("nan"),
                         errors({kk: v[:k] for kk, v in r.params.items()}, sub), float("nan")))


class _Rows(list):
    """Prints each row as soon as it is measured (a long run that is cut short keeps its figures)."""

    def append(self, row):
        name, method, vps, err, conv = row
        e = ", ".join(f"{k} {v:.4f}" if "°" not in k and k != "load" else f"{k} {v:.2f}" for k, v in err.items())
        print(f"{name:<11} {method:<30} {vps:8.0f}  {conv:5.3f}  {e}", flush=True)
        super().append(row)


if __name__ == "__main__":
    main()

"""Real data: dipy's small bundled datasets through `sbi-dmri infer` (refusal, --force) and `sbi-dmri fit`.

For each dataset this script
  1. finds the NIfTI and FSL files (`--dipy-python` runs dipy's `get_fnames` in ANOTHER interpreter, so
     dipy never becomes a dependency of sbi_dmri; or `--data-dir` holds `<name>.nii[.gz]/.bval/.bvec`),
  2. writes clean FSL gradient files (3×N bvec; the NaN direction dipy ships on b = 0 rows set to (1, 0, 0)),
  3. runs what `sbi-dmri infer` does without `--force` and prints the refusal,
  4. runs `sbi-dmri infer --force` (library call `infer_volume`, same code path) with the SNR left to the
     package (these scans have one b = 0, so it comes from the DTI/DKI residual fallback) unless `--snr`,
  5. runs `sbi-dmri fit` (library call `fit_volume`, ball_stick NLLS, Gaussian noise),
  6. prints a table network vs NLLS (Pearson r, median |diff|, medians; the angle between the network's
     mean axis and NLLS's where NLLS f_stick > 0.3; the fraction flagged by the k̂ trust check; timings)
     and writes one PNG per dataset (a slice of network mean, NLLS and network std per parameter).

    python benchmarks/real_data.py --dipy-python /tmp/dipyenv/bin/python --out /tmp/sbi_dmri_real_data \
        --figures benchmarks/results

The timing of these scans is not known: δ = 20 ms, Δ = 35 ms are assumed (`--delta`, `--Delta`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

DATASETS = ("small_64D", "small_101D", "small_25")
SCALARS = ("f_stick", "d_par", "d_iso")
UNITS = {"f_stick": "", "d_par": " (µm²/ms)", "d_iso": " (µm²/ms)"}


def locate(name: str, dipy_python: str | None, data_dir: str | None) -> tuple[str, str, str]:
    """(nifti, bval, bvec) paths of one dataset."""
    if data_dir:
        base = os.path.join(data_dir, name)
        nii = next((base + e for e in (".nii.gz", ".nii") if os.path.exists(base + e)), None)
        if nii is None:
            raise FileNotFoundError(f"no {base}.nii[.gz]")
        return nii, base + ".bval", base + ".bvec"
    if not dipy_python:
        raise SystemExit("give --dipy-python (an interpreter with dipy installed) or --data-dir")
    code = f"from dipy.data import get_fnames; print('\\n'.join(map(str, get_fnames(name={name!r}))))"
    out = subprocess.run([dipy_python, "-c", code], check=True, capture_output=True, text=True).stdout
    paths = [p for p in out.strip().splitlines() if p.strip()][-3:]
    return tuple(paths)  # type: ignore[return-value]


def write_fsl(bval_in: str, bvec_in: str, out_prefix: str) -> tuple[str, str, dict]:
    """Clean FSL files: b as given (s/mm²), bvec 3×N, non-finite or zero-length rows → (1, 0, 0)."""
    b = np.loadtxt(bval_in).ravel()
    g = np.loadtxt(bvec_in)
    if g.shape[0] != 3 and g.shape[1] == 3:
        g = g.T
    g = g.T.copy()  # (N, 3)
    norm = np.linalg.norm(np.nan_to_num(g), axis=1)
    bad = ~np.all(np.isfinite(g), axis=1) | (norm < 1e-6)
    g[bad] = (1.0, 0.0, 0.0)
    g[~bad] /= norm[~bad, None]
    np.savetxt(out_prefix + ".bval", b[None, :], fmt="%g")
    np.savetxt(out_prefix + ".bvec", g.T, fmt="%.6f")
    info = {"n": int(b.size), "n_b0": int(np.sum(b <= 50)), "b_min_dw": float(b[b > 50].min()),
            "b_max": float(b.max()), "n_fixed_bvec_rows": int(bad.sum())}
    return out_prefix + ".bval", out_prefix + ".bvec", info


def _load(path):
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj, np.float64)


def synthetic_snr_check(n_voxels: int = 2000, seed: int = 0) -> None:
    """σ from `estimate_sigma_from_residuals` on synthetic ball-and-stick scans with ONE b = 0 (numpy only).

    S0 ∈ [200, 800] per voxel, noise σ ∈ {10, 20, 40} (SNR 5–80), Rician; f_stick ∈ [0.1, 0.8],
    d_par, d_iso ∈ [1, 3] µm²/ms; one fibre, or two equal fibre populations at random angles.
    """
    from sbi_dmri.noise import estimate_sigma_from_residuals

    rng = np.random.default_rng(seed)

    def unit(n):
        v = rng.normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    print("\n| protocol (b in ms/µm² × directions) | fibres | σ = 10 | σ = 20 | σ = 40 | fit |")
    print("|---|---|---|---|---|---|")
    for label, shells, n_dir in (("1 × 64 at b = 1", (1.0,), 64), ("1 × 30 at b = 2", (2.0,), 30),
                                 ("2 × 30 at b = 1, 2", (1.0, 2.0), 30), ("3 × 30 at b = 1, 2, 3", (1.0, 2.0, 3.0), 30)):
        for n_fibres in (1, 2):
            ratios = []
            for sigma in (10.0, 20.0, 40.0):
                b = np.concatenate([[0.0]] + [np.full(n_dir, s) for s in shells])
                g = np.concatenate([[[1.0, 0.0, 0.0]]] + [unit(n_dir) for _ in shells])
                f, d_par, d_iso = (rng.uniform(lo, hi, (n_voxels, 1)) for lo, hi in ((0.1, 0.8), (1, 3), (1, 3)))
                e = (1.0 - f) * np.exp(-b[None, :] * d_iso)
                for _ in range(n_fibres):
                    e = e + f / n_fibres * np.exp(-b[None, :] * d_par * (unit(n_voxels) @ g.T) ** 2)
                s0 = rng.uniform(200.0, 800.0, (n_voxels, 1))
                y = np.abs(s0 * e + sigma * (rng.normal(size=e.shape) + 1j * rng.normal(size=e.shape)))
                est, model, _ = estimate_sigma_from_residuals(y, b, g)
                ratios.append(est / sigma)
            print(f"| {label} | {n_fibres} | " + " | ".join(f"{r:.2f}" for r in ratios) + f" | {model} |")
    print("(estimated σ / true σ)")


def snr_fallback(nii, bval, bvec, timing) -> dict:
    """What the single-b0 fallback gives (σ and median S0/σ before clipping to the network's range)."""
    from sbi_dmri.acquisition import B0_THRESHOLD
    from sbi_dmri.io import load_dwi
    from sbi_dmri.noise import estimate_sigma_from_residuals

    vol = load_dwi(nii, bval, bvec, **timing)
    s, acq = vol.voxels(), vol.acquisition
    sigma, model, _ = estimate_sigma_from_residuals(s, acq.bvalues, acq.directions)
    b0 = np.asarray(acq.bvalues) <= B0_THRESHOLD
    return {"sigma": sigma, "model": model, "median_snr": float(np.median(np.mean(s[:, b0], axis=1)) / sigma)}


def compare(inf_dir: str, fit_dir: str) -> tuple[dict, dict]:
    """Network-vs-NLLS statistics over the voxels both give, and the slices for the figure."""
    rows, maps = {}, {}
    flag = _load(os.path.join(inf_dir, "trust_flag.nii.gz"))
    fitted = _load(os.path.join(fit_dir, "fitted.nii.gz")) > 0
    for p in SCALARS:
        net = _load(os.path.join(inf_dir, f"{p}_mean.nii.gz"))
        std = _load(os.path.join(inf_dir, f"{p}_std.nii.gz"))
        width = _load(os.path.join(inf_dir, f"{p}_width_ratio.nii.gz"))
        nl = _load(os.path.join(fit_dir, f"{p}.nii.gz"))
        ok = np.isfinite(net) & np.isfinite(nl) & fitted
        rows[p] = {"r": float(np.corrcoef(net[ok], nl[ok])[0, 1]), "mad": float(np.median(np.abs(net[ok] - nl[ok]))),
                   "median_net": float(np.median(net[ok])), "median_nlls": float(np.median(nl[ok])),
                   "median_std": float(np.median(std[ok])), "median_width": float(np.median(width[ok]))}
        maps[p] = (net, nl, std, width)
    n_net = _load(os.path.join(inf_dir, "orientation_mean.nii.gz"))
    n_nl = _load(os.path.join(fit_dir, "orientation.nii.gz"))
    f_nl = _load(os.path.join(fit_dir, "f_stick.nii.gz"))
    cos = np.abs(np.sum(n_net * n_nl, axis=-1)) / (np.linalg.norm(n_net, axis=-1) * np.linalg.norm(n_nl, axis=-1))
    ang = np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))
    sel = np.isfinite(ang) & (f_nl > 0.3) & fitted
    in_mask = np.isfinite(flag)
    rows["orientation"] = {"median_angle_deg": float(np.median(ang[sel])) if sel.any() else float("nan"),
                           "n_voxels": int(sel.sum())}
    rows["flagged"] = float(np.mean(flag[in_mask] == 1))
    maps["flag"] = flag
    return rows, maps


def figure(name: str, maps: dict, path: str, info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = maps["f_stick"][0].shape[2] // 2
    limits = {"f_stick": (0, 1), "d_par": (0, 3.5), "d_iso": (0, 3.5)}
    fig, axes = plt.subplots(len(SCALARS), 5, figsize=(12.5, 2.4 * len(SCALARS)), constrained_layout=True)
    for i, p in enumerate(SCALARS):
        net, nl, std, width = maps[p]
        for j, (img, title, lim) in enumerate(((net, "network mean", limits[p]), (nl, "NLLS", limits[p]),
                                               (std, "network std", (0, 0.5 * limits[p][1])),
                                               (width, "posterior/prior width", (0, 1.2)))):
            im = axes[i, j].imshow(np.rot90(img[:, :, z]), vmin=lim[0], vmax=lim[1], cmap="viridis")
            axes[i, j].set_title(f"{p}{UNITS[p]}: {title}", fontsize=8)
            fig.colorbar(im, ax=axes[i, j], shrink=0.8)
    im = axes[0, 4].imshow(np.rot90(maps["flag"][:, :, z]), vmin=0, vmax=2, cmap="magma")
    axes[0, 4].set_title("trust flag (0 ok, 1 k̂ > 0.7, 2 unusable)", fontsize=8)
    fig.colorbar(im, ax=axes[0, 4], shrink=0.8)
    for ax in axes[1:, 4]:
        ax.set_visible(False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name}: slice z = {z}; {info['n']} measurements, b ≤ {info['b_max']:g} s/mm², "
                 f"{info['n_b0']} b=0 (forced: outside the network's protocol family)", fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_dataset(name, args, net) -> dict:
    from sbi_dmri.fitting.volume import fit_volume
    from sbi_dmri.inference import infer_volume

    nii, bval, bvec = locate(name, args.dipy_python, args.data_dir)
    work = os.path.join(args.out, name)
    os.makedirs(work, exist_ok=True)
    bval, bvec, info = write_fsl(bval, bvec, os.path.join(work, name))
    timing = dict(delta=args.delta, Delta=args.Delta)
    cmd = (f"sbi-dmri infer --model {args.model} --dwi {nii} --bval {bval} --bvec {bvec} "
           f"--delta {args.delta} --Delta {args.Delta}")
    print(f"\n## {name}: {nii}\n{json.dumps(info)}\n$ {cmd} --out {work}/refused")
    try:
        infer_volume(net, nii, bval, bvec, **timing, out_dir=os.path.join(work, "refused"), progress=False)
        refusal = None
        print("(not refused: the protocol is inside the network's family)")
    except ValueError as e:
        refusal = str(e)
        print(f"sbi-dmri: error: {refusal}")
    snr_opt = f" --snr {args.snr:g}" if args.snr else ""
    print(f"$ {cmd} --samples {args.samples} --force{snr_opt} --out {work}/infer")
    print(f"$ sbi-dmri fit --model {args.model} --dwi {nii} --bval {bval} --bvec {bvec} "
          f"--delta {args.delta} --Delta {args.Delta} --out {work}/fit")
    t_inf, t_fit, summary = [], [], None
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        summary = infer_volume(net, nii, bval, bvec, **timing, samples=args.samples, force=True, snr=args.snr,
                               out_dir=os.path.join(work, "infer"), progress=False, seed=args.seed)
        t_inf.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fit_volume(args.model, nii, bval, bvec, **timing, out_dir=os.path.join(work, "fit"), progress=False)
        t_fit.append(time.perf_counter() - t0)
    snr = snr_fallback(nii, bval, bvec, timing)
    for note in summary["notes"] + summary["warnings"]:
        print(f"  note: {note}")
    rows, maps = compare(os.path.join(work, "infer"), os.path.join(work, "fit"))
    if args.figures:
        os.makedirs(args.figures, exist_ok=True)
        path = os.path.join(args.figures, f"real_data_{name}.png")
        figure(name, maps, path, info)
        print(f"  figure: {path}")
    return {"name": name, "info": info, "refusal": refusal, "rows": rows, "n_voxels": summary["n_voxels"],
            "snr_note": next((n for n in summary["notes"] if n.startswith("SNR")), ""),
            "snr": snr, "t_infer": t_inf, "t_fit": t_fit}


def print_tables(results: list[dict]) -> None:
    print("\n| dataset | voxels | SNR fallback: σ, median S0/σ | flagged (k̂ > 0.7) | "
          "axis angle to NLLS (NLLS f_stick > 0.3) |")
    print("|---|---|---|---|---|")
    for r in results:
        o, sn = r["rows"]["orientation"], r["snr"]
        print(f"| {r['name']} | {r['n_voxels']} | {sn['sigma']:.3g} ({sn['model']}), {sn['median_snr']:.3g} | "
              f"{100 * r['rows']['flagged']:.0f} % | {o['median_angle_deg']:.1f}° ({o['n_voxels']} voxels) |")
    print("\nWall seconds, library calls incl. NIfTI read/write; first run incl. JAX compilation, then the median "
          "of the later runs (compiled code cached in-process)")
    print("\n| dataset | infer --force, first | fit, first | infer --force, later (median) | fit, later (median) | "
          "fit / infer (later) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ti, tf = r["t_infer"], r["t_fit"]
        if len(ti) > 1:
            wi, wf = float(np.median(ti[1:])), float(np.median(tf[1:]))
            later = f"{wi:.2f} ({len(ti) - 1} runs) | {wf:.2f} | {wf / wi:.1f}"
        else:
            later = "– | – | –"
        print(f"| {r['name']} | {ti[0]:.1f} | {tf[0]:.1f} | {later} |")
    print("\n| dataset | map | Pearson r | median abs diff | median net | median NLLS | median net std | "
          "median posterior/prior width |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for p in SCALARS:
            s = r["rows"][p]
            print(f"| {r['name']} | {p}{UNITS[p]} | {s['r']:.2f} | {s['mad']:.3f} | {s['median_net']:.3g} | "
                  f"{s['median_nlls']:.3g} | {s['median_std']:.3g} | {s['median_width']:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), help="(none: only --snr-check)")
    ap.add_argument("--dipy-python", help="python interpreter with dipy installed (kept out of sbi_dmri)")
    ap.add_argument("--data-dir", help="folder with <name>.nii[.gz], <name>.bval, <name>.bvec instead")
    ap.add_argument("--out", default="/tmp/sbi_dmri_real_data", help="working folder for gradients and maps")
    ap.add_argument("--figures", default=None, help="folder for real_data_<name>.png (default: none)")
    ap.add_argument("--model", default="ball_stick", help="shipped network (also the NLLS model)")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--snr", type=float, default=None, help="S0/σ to give the network (default: estimated)")
    ap.add_argument("--delta", type=float, default=20.0, help="assumed pulse duration δ, ms")
    ap.add_argument("--Delta", type=float, default=35.0, help="assumed pulse separation Δ, ms")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per dataset: the first includes compilation, the median of the rest is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snr-check", action="store_true",
                    help="also check the single-b0 SNR fallback on synthetic ball-and-stick scans")
    args = ap.parse_args(argv)
    if args.snr_check:
        synthetic_snr_check()
    if not args.datasets:
        return 0

    from sbi_dmri.pretrained import load_pretrained

    net = load_pretrained(args.model)
    print(f"network: {net!r}; load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} cores")
    results = [run_dataset(name, args, net) for name in args.datasets]
    print_tables(results)
    print(f"\nload at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

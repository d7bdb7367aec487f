"""Whole-volume speed: the shipped ball_stick network (point estimates: the point head alone and refined by
two Gauss–Newton steps as `sbi-dmri infer --samples 0` does; posterior with 100 draws, with and without the k̂
trust check, and importance-corrected as `sbi-dmri infer` does by default) against Optimistix NLLS
(`fit_nlls`) on the same synthetic voxels.

    python benchmarks/volume_inference.py [--voxels 100000] [--posterior-voxels N] [--nlls-voxels 4096] [--repeats 3] [--point-only]

Voxels: parameters drawn from the network's prior, hcp_3shell (6 b=0 + 3 shells × 30 directions),
Rician noise at SNR 30, S0 = 1000. Start-up is excluded everywhere: loading the network, and one
warm-up call per path (compilation) before timing. NLLS runs on the first `--nlls-voxels` voxels
(warm-up on a separate 1024-voxel call with the same chunk size) and is extrapolated linearly to
the full volume (per-voxel cost is constant across chunks; stated in the output); on a loaded machine
the posterior paths can likewise run on the first `--posterior-voxels` voxels. Times are medians
over `--repeats` runs. f_stick RMSE against the truth is reported for each path on the voxels it ran on,
and for the network also on the NLLS subset.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def simulate(model, prior, acq, n: int, snr: float, seed: int, chunk: int = 8192):
    from sbi_dmri.noise import add_noise

    key = jax.random.PRNGKey(seed)
    truth = jax.device_get(prior.sample(jax.random.fold_in(key, 0), n))
    sim = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))
    out = []
    for i in range(0, n, chunk):
        p = {k: jnp.asarray(v[i:i + chunk]) for k, v in truth.items()}
        e = sim(acq, p)
        out.append(np.asarray(add_noise(jax.random.fold_in(key, 1 + i), 1000.0 * e, snr, kind="rician", s0=1000.0)))
    return {k: np.asarray(v) for k, v in truth.items()}, np.concatenate(out).astype(np.float32)


def rmse(a, b):
    ok = np.isfinite(a)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=100_000)
    ap.add_argument("--nlls-voxels", type=int, default=4096)
    ap.add_argument("--posterior-voxels", type=int, default=None, help="default: all voxels")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--model", default="ball_stick")
    ap.add_argument("--point-only", action="store_true", help="time the point paths and NLLS only")
    ap.add_argument("--large-samples", type=int, default=1000,
                    help="also time the importance-corrected posterior with this many draws (0: skip) ...")
    ap.add_argument("--large-voxels", type=int, default=8192, help="... on this many voxels (extrapolated)")
    args = ap.parse_args()

    from sbi_dmri.fitting import fit_nlls
    from sbi_dmri.inference import infer_voxels
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    acq = load_protocol("hcp_3shell")
    net = load_pretrained(args.model)
    net.protocol.check(acq)
    truth, y = simulate(net.space.model, net.space.prior, acq, args.voxels, 30.0, seed=0)
    f_true = truth["f_stick"]
    print(f"{args.voxels} voxels × {acq.n_measurements} measurements; devices {jax.devices()}; "
          f"cpu count {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")

    rows = {}

    def bench(label, n, **kw):
        times, res = [], None
        for r in range(args.repeats):
            kw.setdefault("chunk_size", args.chunk)
            res = infer_voxels(net, y[:n], acq, progress=False, warmup=(r == 0), **kw)
            times.append(res.seconds)
            print(f"  {label} on {n} voxels: run {r + 1}: {res.seconds:.2f} s", flush=True)
        t = float(np.median(times))
        rows[label] = (t * args.voxels / n, times, rmse(res.mean["f_stick"], f_true[:n]), res, n, t)

    n_post = min(args.posterior_voxels or args.voxels, args.voxels)
    head, refined = "network point head alone (--refine-steps 0)", "refined point estimate (infer --samples 0)"
    bench(head, args.voxels, samples=0, refine_steps=0)
    bench(refined, args.voxels, samples=0)
    if not args.point_only:
        bench(f"network posterior, {args.samples} draws", n_post, samples=args.samples, trust=False, correct=False)
        bench(f"network posterior, {args.samples} draws + k̂ trust", n_post, samples=args.samples, trust=True, correct=False)
        bench(f"importance-corrected posterior, {args.samples} draws (infer's default)", n_post, samples=args.samples)
        if args.large_samples:
            bench(f"importance-corrected posterior, {args.large_samples} draws", min(args.large_voxels, args.voxels),
                  samples=args.large_samples, chunk_size=min(args.chunk, 512))

    n_sub = min(args.nlls_voxels, args.voxels)
    fit_nlls(net.space.model, acq, y[-1024:], progress=False, chunk_size=1024)  # warm-up (compilation)
    times, fit = [], None
    for r in range(args.repeats):
        t = time.perf_counter()
        fit = fit_nlls(net.space.model, acq, y[:n_sub], progress=False, chunk_size=1024)
        times.append(time.perf_counter() - t)
        print(f"  NLLS on {n_sub} voxels: run {r + 1}: {times[-1]:.2f} s", flush=True)
    t_nlls_sub = float(np.median(times))
    t_nlls = t_nlls_sub * args.voxels / n_sub
    nlls_rmse = rmse(fit.params["f_stick"], f_true[:n_sub])

    print()
    print(f"| path | wall time for {args.voxels} voxels (s) | voxels/s | speed-up vs NLLS | f_stick RMSE |")
    print("|---|---|---|---|---|")
    for label, (t, _, err, _, n, t_meas) in rows.items():
        how = "" if n == args.voxels else f" (measured {t_meas:.2f} on {n}, ×{args.voxels / n:.1f} extrapolated)"
        print(f"| {label} | {t:.2f}{how} | {args.voxels / t:,.0f} | {t_nlls / t:.1f}× | {err:.4f} |")
    print(f"| NLLS (fit_nlls, {n_sub} voxels, ×{args.voxels / n_sub:.1f} extrapolated) | {t_nlls:.1f} "
          f"(measured {t_nlls_sub:.2f} on {n_sub}) | {n_sub / t_nlls_sub:,.0f} | 1× | {nlls_rmse:.4f} |")
    print()
    names = [n for n in net.space.names if n not in net.space.axis_names]
    print(f"On the NLLS subset ({n_sub} voxels), RMSE against the truth; NLLS converged {100 * fit.fraction_converged:.1f} %:")
    print()
    print("| path | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, row in list(rows.items()) + [("NLLS", (None, None, None, fit.params))]:
        est = row[3].mean if label != "NLLS" else row[3]
        print(f"| {label} | " + " | ".join(f"{rmse(np.asarray(est[n])[:n_sub], truth[n][:n_sub]):.4f}" for n in names) + " |")
    if args.point_only:
        print(f"all times: { {k: [round(x, 2) for x in v[1]] for k, v in rows.items()} }, NLLS {[round(x, 2) for x in times]}")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return
    cor = rows[f"importance-corrected posterior, {args.samples} draws (infer's default)"][3]
    trust = rows[f"network posterior, {args.samples} draws + k̂ trust"][3]
    k = trust.khat[np.isfinite(trust.khat)]
    print(f"k̂ of the network's draws: median {np.median(k):.3f}, flagged (> 0.7) {100 * np.mean(k > 0.7):.1f} %")
    k = cor.khat[np.isfinite(cor.khat)]
    print(f"k̂ of the corrected draws: median {np.median(k):.3f}, flagged (> 0.7) {100 * np.mean(k > 0.7):.1f} %")
    print(f"all times: { {k: [round(x, 2) for x in v[1]] for k, v in rows.items()} }, NLLS {[round(x, 2) for x in times]}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

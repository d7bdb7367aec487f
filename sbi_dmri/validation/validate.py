"""`validate(quick, out_dir)`: run every analytic-versus-Monte-Carlo check and write the compendium.

Pass rule for a kernel against MC: |ΔS| ≤ tolerance + 3·SE_MC, with the PHYSICS.md tolerance map for GPD
kernels (1e-3 where S ≥ 0.9 or Dδ/R² ≥ 2; 1e-2 where S ≥ 0.65; outside, no claim: the departure curve
is the result). MC itself is validated first (free diffusion, MISST, Mitra, slab exchange), and the kernel
records list those as dependencies.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import norm

from ..acquisition import Acquisition
from ..simulators.montecarlo import Cylinder, Free, Planes, Sphere, simulate
from .compendium import atomic_write_text, make_record, write_record
from .mc_checks import karger_check, mitra_check, slab_exchange_check, step_convergence
from .plots import departure_plot
from .references import MISST_B, MISST_SETTINGS, misst_signal

X = np.array([[1.0, 0.0, 0.0]])
MC_ASSUMPTIONS = ["fixed step length sqrt(6 D dt) in a uniform random direction",
                  "specular reflection iterated within each step", "phase at step midpoints, float32",
                  "uniform initial placement in the compartment"]


def gpd_tolerance(signal, diffusivity, delta, size):
    """PHYSICS.md tolerance map; NaN where the map makes no claim (S < 0.65 and Dδ/R² < 2)."""
    s = np.asarray(signal, float)
    long_pulse = diffusivity * delta / size**2 >= 2.0
    return np.where((s >= 0.9) | long_pulse, 1e-3, np.where(s >= 0.65, 1e-2, np.nan))


def _pgse(b, delta, Delta):
    b = np.atleast_1d(b)
    return Acquisition.pgse(b, np.tile(X, (len(b), 1)), delta=delta, Delta=Delta)


def _kernel_signal(geometry, b, delta, Delta, size, D):
    import jax.numpy as jnp

    from ..kernels import cylinder, planes, sphere

    g = np.tile(X, (len(b), 1))
    delta, Delta = jnp.full(len(b), delta), jnp.full(len(b), Delta)
    size, D = jnp.asarray(size, jnp.float32), jnp.asarray(D, jnp.float32)
    if geometry == "cylinder":
        return np.asarray(cylinder.cylinder_gpd(jnp.asarray(b), jnp.asarray(g), delta, Delta,
                                                jnp.asarray([0.0, 0.0, 1.0]), size, D), float)
    if geometry == "sphere":
        return np.asarray(sphere.sphere_gpd(jnp.asarray(b), delta, Delta, size, D), float)
    return np.asarray(planes.planes_gpd(jnp.asarray(b), jnp.asarray(g), delta, Delta,
                                        jnp.asarray([1.0, 0.0, 0.0]), size, D), float)


def _substrate(geometry, size):
    if geometry == "cylinder":
        return Cylinder(size, orientation=(0.0, 0.0, 1.0))
    if geometry == "sphere":
        return Sphere(size)
    return Planes(size, normal=(1.0, 0.0, 0.0))


def _free_record(cfg, seed):
    b = np.array([0.3, 0.8, 1.5])
    r1 = simulate(Free(), _pgse(b, 5.0, 15.0), diffusivity=2.0, n_spins=cfg["n_small"], dt=0.1, key=seed)
    dt, T = 0.1, 40.0
    t = (np.arange(int(T / dt)) + 0.5) * dt
    G = np.stack([a * np.cos(2 * np.pi * 2 * t / T)[:, None] * np.array([0.0, 1.0, 0.0]) for a in (150.0, 250.0)])
    ogse = Acquisition.from_waveform(G, dt)
    r2 = simulate(Free(), ogse, diffusivity=2.0, n_spins=cfg["n_small"], dt=0.05, key=seed + 1)
    z1 = (r1.signal - np.exp(-2.0 * b)) / r1.stderr
    z2 = (r2.signal - np.exp(-2.0 * ogse.bvalues)) / r2.stderr
    # "Within 3 standard errors" for a SET of k z-scores: the threshold whose family-wise false-alarm rate
    # equals that of 3 SE for one (0.27 %), i.e. Šidák: 3.46 for k = 5. A plain 3 on each of 5 would fail
    # a correct simulator 1.3 % of the time (seen once: OGSE z = −3.02 at 1e4 spins, while 40 seeds gave
    # mean z ≈ −0.1, sd 1.1, and 1e6 spins z = +0.6, +0.9).
    k = z1.size + z2.size
    z_max = float(norm.isf(0.5 * (1.0 - (1.0 - 2.0 * norm.sf(3.0)) ** (1.0 / k))))
    return make_record(
        id="mc-free-diffusion", claim="Monte Carlo free diffusion is within 3 standard errors (family-wise over the "
        "measurements) of exp(-bD) for PGSE and for a cosine OGSE waveform", model="free diffusion", kernel=None, assumptions=MC_ASSUMPTIONS,
        scope={"diffusivity": 2.0, "pgse_b": b, "pgse_delta": 5.0, "pgse_Delta": 15.0, "ogse_b": ogse.bvalues,
               "ogse_periods": 2, "ogse_duration": T},
        evidence={"seeds": [seed, seed + 1], "n_spins": cfg["n_small"], "n_steps": [r1.n_steps, r2.n_steps],
                  "dt": [0.1, 0.05], "z_pgse": z1, "z_ogse": z2,
                  "tolerance": f"|z| < {z_max:.3f}: 3 standard errors family-wise over the {k} z-scores (Šidák)"},
        passed=bool(np.all(np.abs(z1) < z_max) and np.all(np.abs(z2) < z_max)))


def _misst_and_gpd(cfg, seed, out_dir):
    """MC vs MISST for the four curves (MC validation), then GPD vs MC departure grids."""
    records = []
    D, R, Delta = MISST_SETTINGS["diffusivity"], MISST_SETTINGS["radius"], MISST_SETTINGS["Delta"]
    idx = cfg["misst_index"]
    for geometry in ("cylinder", "sphere"):
        for delta in (1.0, 30.0):
            full_ref = misst_signal(geometry, delta)
            ref = full_ref[idx]
            r = simulate(_substrate(geometry, R), _pgse(MISST_B[idx], delta, Delta), diffusivity=D,
                         n_spins=cfg["n_misst"], dt=cfg["dt_misst"], key=seed)
            # Curve-level noise scale: the largest standard error over the curve (≈ (1 − S_min²)/√(2N),
            # PHYSICS.md's "≈ 2e-3 at N = 1e5"). Per-point z-scores are recorded too, but at δ = 30 ms they
            # measure the reference, not the MC: the MISST curve itself is not smooth in b (a sawtooth
            # with jumps of ~1e-3 between neighbouring b-values; reference_roughness, from the reference
            # alone, is its largest deviation from the mean of its two neighbours), and the MC residual
            # follows that sawtooth whatever dt (benchmarks/results/montecarlo.md).
            roughness = float(np.max(np.abs(full_ref[1:-1] - 0.5 * (full_ref[:-2] + full_ref[2:]))))
            se_curve = float(np.max(r.stderr))
            z = (r.signal - ref) / se_curve
            z_point = (r.signal - ref) / np.maximum(r.stderr, 1e-6)
            records.append(make_record(
                id=f"mc-misst-{geometry}-delta{int(delta)}",
                claim=f"Monte Carlo reproduces the MISST matrix-formalism {geometry} signal within 3 standard errors",
                model=f"impermeable {geometry}", kernel=None, assumptions=MC_ASSUMPTIONS,
                scope={"radius": R, "diffusivity": D, "delta": delta, "Delta": Delta, "b": MISST_B[idx],
                       "gradient": "perpendicular to the cylinder axis"},
                evidence={"seeds": [seed], "n_spins": cfg["n_misst"], "n_steps": r.n_steps, "dt": cfg["dt_misst"],
                          "step_over_radius": r.step_length / R, "mc": r.signal, "stderr": r.stderr, "reference": ref,
                          "max_abs_error": float(np.max(np.abs(r.signal - ref))), "stderr_curve": se_curve,
                          "max_abs_z_curve": float(np.max(np.abs(z))), "max_abs_z_point": float(np.max(np.abs(z_point))),
                          "reference_roughness": roughness,
                          "tolerance": "3 x the curve's largest standard error"},
                passed=bool(np.all(np.abs(z) < 3))))
    misst_ids = [rec["id"] for rec in records]

    for geometry, size in (("cylinder", R), ("sphere", R), ("planes", 2 * R)):
        curves, rows, ok = [], [], True
        for delta in cfg["deltas"]:
            b = cfg["b_grid"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = simulate(_substrate(geometry, size), _pgse(b, delta, Delta), diffusivity=D,
                             n_spins=cfg["n_gpd"], dt=min(cfg["dt_misst"], delta / 10), key=seed + int(delta))
            k = _kernel_signal(geometry, b, delta, Delta, size, D)
            err = k - r.signal
            length = size if geometry != "planes" else size / 2  # R, or the half-spacing for planes
            tol = gpd_tolerance(r.signal, D, delta, length)
            claimed = np.isfinite(tol)
            passes = np.abs(err[claimed]) <= tol[claimed] + 3 * r.stderr[claimed]
            ok &= bool(np.all(passes))
            curves.append({"label": f"δ = {delta:g} ms", "x": b, "error": err, "stderr": r.stderr})
            rows.append({"delta": delta, "b": b, "kernel": k, "mc": r.signal, "stderr": r.stderr, "error": err,
                         "tolerance": tol, "n_steps": r.n_steps, "dt": min(cfg["dt_misst"], delta / 10),
                         "n_claimed": int(claimed.sum()), "n_pass": int(passes.sum()),
                         "error_at_max_b": float(err[-1])})
        png = f"gpd-{geometry}-departure.png"
        departure_plot(Path(out_dir) / png, curves, xlabel="b (ms/µm²)",
                       title=f"{geometry} GPD − MC (size {size} µm, D = {D}, Δ = {Delta} ms)", tolerance=1e-2)
        records.append(make_record(
            id=f"gpd-{geometry}-vs-mc", claim=f"The {geometry} GPD kernel agrees with Monte Carlo inside the "
            "PHYSICS.md tolerance map (|ΔS| ≤ tol + 3 SE); outside it, the departure curve is recorded",
            model=f"impermeable {geometry}", kernel=f"sbi_dmri.kernels.{geometry}.{geometry}_gpd",
            assumptions=["Gaussian phase distribution", "rectangular PGSE lobes", "impermeable walls"],
            scope={"size": size, "size_meaning": "radius" if geometry != "planes" else "spacing", "diffusivity": D,
                   "Delta": Delta, "deltas": cfg["deltas"], "b_max": float(cfg["b_grid"].max())},
            evidence={"seeds": [seed + int(d) for d in cfg["deltas"]], "n_spins": cfg["n_gpd"], "grid": rows,
                      "plot": png, "tolerance": "1e-3 where S>=0.9 or D delta/R^2>=2; 1e-2 where S>=0.65"},
            passed=ok, dependencies=misst_ids + ["mc-free-diffusion"]))
    return records


def _physics_records(cfg, seed):
    recs = []
    for geometry in ("cylinder", "sphere"):
        m = mitra_check(geometry, n_spins=cfg["n_mitra"], seed=seed)
        recs.append(make_record(
            id=f"mc-mitra-{geometry}", claim="Monte Carlo D(t)/D0 matches Mitra's short-time limit within 0.02",
            model=f"impermeable {geometry}", kernel=None, assumptions=MC_ASSUMPTIONS,
            scope={k: m[k] for k in ("radius", "diffusivity", "t", "dt")}, evidence=m | {"tolerance": 0.02},
            passed=abs(m["error"]) < 0.02))
    s = slab_exchange_check(n_spins=cfg["n_slab"], dt=0.01, t=8.0, seed=seed)
    recs.append(make_record(
        id="mc-permeable-slab", claim="Monte Carlo permeable membranes realise the exact slab eigenvalue "
        "λ tan(λL/2) = 2κ/D within 2 %", model="periodic permeable planes", kernel=None,
        assumptions=MC_ASSUMPTIONS + ["transit probability P = (2/3) κ δs / D (Fieremans & Lee 2018)"],
        scope={k: s[k] for k in ("spacing", "kappa", "diffusivity", "t", "dt")},
        evidence=s | {"tolerance": 0.02, "note": "realised κ runs high by ≈ 1.4·P (P the transit probability); "
                      "measured +7.5 % at P = 0.052, +3.7 % at P = 0.026"},
        passed=abs(s["relative_error"]) < 0.02))
    conv = step_convergence(cfg["step_ratios"], n_spins=cfg["n_conv"], seed=seed)
    recs.append(make_record(
        id="mc-step-convergence", claim="Monte Carlo step-size bias at b = 3 ms/µm² (cylinder R = 5 µm, δ = 30, "
        "Δ = 40 ms, D = 2) shrinks with step/R and is below 1e-3 + 3 SE at step/R ≤ 0.31",
        model="impermeable cylinder", kernel=None, assumptions=MC_ASSUMPTIONS,
        scope={"radius": 5.0, "b": 3.0, "delta": 30.0, "Delta": 40.0, "diffusivity": 2.0},
        evidence={"seeds": [seed], "n_spins": cfg["n_conv"], "table": conv,
                  "published_bias": {"0.98": 0.010, "0.69": 0.006, "0.49": 0.0026, "0.31": 0.0004}},
        passed=all(abs(r["bias"]) <= 1e-3 + 3 * r["stderr"] for r in conv if r["step_over_radius"] <= 0.31)))
    return recs


def karger_records(n_spins: int, seed: int, out_dir) -> list[dict]:
    """Kärger vs permeable packed cylinders: pass where k·Δ ≤ 0.11 and |ΔS| ≤ 0.03; departure curve beyond."""
    k = karger_check(kappas=(0.005, 0.01, 0.03), n_spins=n_spins, seed=seed)
    claimed = [r for r in k["rows"] if r["k_delta"] <= 0.11]
    ok = all(np.all(r["abs_error"] <= 0.03 + 3 * r["stderr"]) for r in claimed) and len(claimed) > 0
    png = "karger-departure.png"
    curves = [{"label": f"b = {bv:g} ms/µm²", "x": [r["k_delta"] for r in k["rows"]],
               "error": [r["karger"][i] - r["mc"][i] for r in k["rows"]],
               "stderr": [r["stderr"][i] for r in k["rows"]]} for i, bv in enumerate(k["b"])]
    departure_plot(Path(out_dir) / png, curves, xlabel="k_in→out · Δ (= 2κΔ/R)", tolerance=0.03,
                   title=f"Kärger − MC, hexagonal cylinders R = {k['radius']} µm, f = {k['volume_fraction']}")
    return [make_record(
        id="karger-vs-mc-packed-cylinders", claim="The Kärger two-pool model matches Monte Carlo of permeable "
        "packed cylinders to |ΔS| ≤ 0.03 where k·Δ ≤ 0.11; beyond, the departure curve is the result",
        model="permeable hexagonally packed cylinders (intra + extra)", kernel="sbi_dmri.kernels.exchange.karger",
        assumptions=["barrier-limited exchange (κR/D ≪ 1)", "narrow pulses", "well-mixed pools",
                     "pool attenuations from the impermeable MC (tests the exchange part only)"],
        scope={"radius": k["radius"], "volume_fraction": k["volume_fraction"], "Delta": k["Delta"],
               "delta": k["delta"], "b": k["b"], "k_delta_claimed_max": 0.11},
        evidence=k | {"plot": png, "tolerance": 0.03}, passed=ok,
        dependencies=["mc-permeable-slab", "mc-misst-cylinder-delta1"])]


def validate(quick: bool = True, out_dir="compendium", seed: int = 0) -> list[dict]:
    """Run all checks; write one JSON record per claim (plus PNG departure plots and index.json).

    Args:
        quick: small spin counts and grids (under 2 minutes on a 2-core CPU); False for the full run.
        out_dir: directory for the records.
        seed: base seed (records list the seeds used).
    Returns:
        The records (dicts), also written to `out_dir`.
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if quick:
        cfg = dict(n_small=10000, n_misst=10000, dt_misst=0.1, misst_index=np.array([33, 66, 99]),
                   n_gpd=10000, deltas=[1.0, 30.0], b_grid=np.linspace(0.1, 3.0, 6), n_mitra=10000,
                   n_slab=30000, n_conv=10000, step_ratios=(0.98, 0.31))
    else:
        cfg = dict(n_small=100000, n_misst=100000, dt_misst=0.05, misst_index=np.arange(100),
                   n_gpd=100000, deltas=[1.0, 5.0, 15.0, 30.0], b_grid=np.linspace(0.1, 3.0, 30),
                   n_mitra=100000, n_slab=200000, n_conv=400000, step_ratios=(0.98, 0.69, 0.49, 0.31), n_karger=10000)
    records = [_free_record(cfg, seed)]
    records += _misst_and_gpd(cfg, seed, out_dir)
    records += _physics_records(cfg, seed)
    if not quick:  # hexagonal packings are slow on CPU (≈ 0.5 M spin-steps/s): full run only
        records += karger_records(cfg["n_karger"], seed, out_dir)
    for rec in records:
        write_record(rec, out_dir)
    index = {"quick": quick, "wall_time_s": round(time.time() - t0, 1),
             "records": [{"id": r["id"], "passed": r["passed"], "hash": r["hash"]} for r in records]}
    atomic_write_text(out_dir / "index.json", json.dumps(index, indent=2) + "\n")
    return records

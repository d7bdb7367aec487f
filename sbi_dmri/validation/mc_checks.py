"""Checks of the Monte Carlo walker itself against exact results (no package kernels involved).

Each function runs the simulator and returns a plain dict of measured and expected values, used by the
tests and by `validate` to write compendium records.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..acquisition import Acquisition
from ..simulators.montecarlo import Cylinder, Planes, Sphere, simulate
from .references import MISST_B, misst_signal, mitra, slab_eigenvalues, slab_kappa_from_population


def _silent(duration: float, dt: float) -> Acquisition:
    """A zero-gradient acquisition lasting `duration` ms (walk only; displacements are recorded)."""
    return Acquisition.from_waveform(np.zeros((1, int(round(duration / dt)), 3)), dt)


def mitra_check(geometry: str, *, radius=10.0, diffusivity=2.0, t=1.0, dt=0.005, n_spins=50000, seed=0) -> dict:
    """Apparent diffusivity D(t)/D0 from mean squared displacements against Mitra's short-time limit.

    Cylinder: displacement in the cross-section (d = 2, S/V = 2/R); sphere: 3-D (d = 3, S/V = 3/R).
    """
    sub = Cylinder(radius) if geometry == "cylinder" else Sphere(radius)
    r = simulate(sub, _silent(t, dt), diffusivity=diffusivity, n_spins=n_spins, dt=dt, key=seed, record=True)
    d = 2 if geometry == "cylinder" else 3
    sq = np.sum(r.displacement[:, :d].astype(np.float64) ** 2, axis=1)
    ratio = sq.mean() / (2 * d * diffusivity * t)
    se = sq.std() / np.sqrt(n_spins) / (2 * d * diffusivity * t)
    sv = d / radius
    return {"geometry": geometry, "radius": radius, "diffusivity": diffusivity, "t": t, "dt": dt,
            "n_spins": n_spins, "seed": seed, "measured": float(ratio), "stderr": float(se),
            "predicted": float(mitra(t, diffusivity, sv, d)), "error": float(ratio - mitra(t, diffusivity, sv, d))}


def slab_exchange_check(*, spacing=10.0, kappa=0.2, diffusivity=2.0, t=10.0, dt=0.05, n_spins=100000,
                        seed=0) -> dict:
    """Realised exchange of a permeable slab stack against the exact eigenvalue λ tan(λL/2) = 2κ/D.

    Walkers start uniformly in slab 0; the even-minus-odd population p(t) is inverted through the
    exact mode series for the permeability the walk realised, κ_MC, whence λ₁(κ_MC) vs λ₁(κ).
    """
    r = simulate(Planes(spacing, kappa=kappa), _silent(t, dt), diffusivity=diffusivity, n_spins=n_spins, dt=dt,
                 key=seed, record=True)
    z = r.start[:, 2].astype(np.float64) + r.displacement[:, 2]
    slab = np.floor(z / spacing).astype(np.int64)
    p = float(np.mean(np.where(slab % 2 == 0, 1.0, -1.0)))
    k_mc = slab_kappa_from_population(p, t, spacing, diffusivity)
    lam_exact = slab_eigenvalues(spacing, kappa, diffusivity, 1)[0]
    lam_mc = slab_eigenvalues(spacing, k_mc, diffusivity, 1)[0]
    return {"spacing": spacing, "kappa": kappa, "diffusivity": diffusivity, "t": t, "dt": dt, "n_spins": n_spins,
            "seed": seed, "population_difference": p, "kappa_realised": k_mc, "lambda_exact": lam_exact,
            "lambda_mc": lam_mc, "relative_error": float(lam_mc / lam_exact - 1.0),
            "rate_relative_error": float((lam_mc / lam_exact) ** 2 - 1.0)}


def step_convergence(step_over_radius=(0.98, 0.69, 0.49, 0.31), *, n_spins=100000, seed=0) -> list[dict]:
    """Bias of the MC cylinder signal at b = 3 ms/µm² (R = 5 µm, D = 2, δ = 30, Δ = 40 ms) vs MISST."""
    R, D = 5.0, 2.0
    ref = misst_signal("cylinder", 30)[-1]
    acq = Acquisition.pgse(MISST_B[-1:], np.array([[1.0, 0.0, 0.0]]), delta=30.0, Delta=40.0)
    rows = []
    for ratio in step_over_radius:
        dt = (ratio * R) ** 2 / (6 * D)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # coarse steps on purpose
            r = simulate(Cylinder(R), acq, diffusivity=D, n_spins=n_spins, dt=dt, key=seed)
        rows.append({"step_over_radius": ratio, "dt": dt, "n_steps": r.n_steps, "signal": float(r.signal[0]),
                     "reference": float(ref), "bias": float(r.signal[0] - ref), "stderr": float(r.stderr[0])})
    return rows


def karger_check(kappas=(0.005, 0.01, 0.03), *, radius=4.0, volume_fraction=0.6, diffusivity=2.0, Delta=20.0,
                 delta=1.0, bvalues=(0.5, 1.0, 2.0), dt=0.1, n_spins=20000, seed=0) -> dict:
    """Kärger two-pool exchange vs MC of permeable hexagonally packed cylinders (gradient ⊥ axes).

    The pools' own attenuations −ln E_i come from the same substrate simulated impermeable (κ = 0, the MC
    intra and extra signals), the rates from permeability (k_in→out = 2κ/R, detailed balance), t = Δ. So the
    comparison tests the exchange part of the model only. Returns per-κ rows with k·Δ (the exchange
    parameter κ t_d of PHYSICS.md read as k_in→out·Δ), MC, Kärger, |ΔS| and MC standard errors.
    """
    from ..kernels.exchange import karger
    from ..simulators.montecarlo import PackedCylinders

    b = np.asarray(bvalues, float)
    acq = Acquisition.pgse(b, np.tile([1.0, 0.0, 0.0], (len(b), 1)), delta=delta, Delta=Delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # step/R = 0.27 with the short lobe: accepted, recorded
        r0 = simulate(PackedCylinders.hexagonal(radius, volume_fraction), acq, diffusivity=diffusivity,
                      n_spins=n_spins, dt=dt, key=seed)
        f1 = r0.compartment_fractions["intra"]
        rows = []
        for i, kappa in enumerate(kappas):
            r1 = simulate(PackedCylinders.hexagonal(radius, volume_fraction, kappa=kappa), acq,
                          diffusivity=diffusivity, n_spins=n_spins, dt=dt, key=seed + 1 + i)
            k12 = 2.0 * kappa / radius
            k21 = f1 * k12 / (1.0 - f1)
            E = np.asarray(karger(-np.log(r0.compartment_signals["intra"]), -np.log(r0.compartment_signals["extra"]),
                                  f1, k12, k21, Delta), float)
            rows.append({"kappa": kappa, "k_delta": k12 * Delta, "kappa_R_over_D": kappa * radius / diffusivity,
                         "mc": r1.signal, "karger": E, "stderr": r1.stderr, "abs_error": np.abs(E - r1.signal),
                         "max_abs_error": float(np.max(np.abs(E - r1.signal)))})
    return {"radius": radius, "volume_fraction": volume_fraction, "intra_fraction_mc": f1,
            "diffusivity": diffusivity, "Delta": Delta, "delta": delta, "b": b, "dt": dt, "n_spins": n_spins,
            "seed": seed, "n_steps": r0.n_steps, "impermeable_intra": r0.compartment_signals["intra"],
            "impermeable_extra": r0.compartment_signals["extra"], "rows": rows}

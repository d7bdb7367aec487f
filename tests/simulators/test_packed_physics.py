"""Packed substrates against physics they must reproduce: the placement's volume fraction, and the
intra-axonal (intra-sphere) signal of impermeable packed obstacles against the single-obstacle closed form.

Regime: D δ / R² = 2.2 (≥ 2), where PHYSICS.md's tolerance map gives the GPD kernels |ΔS| ≤ 1e-3; the
walk crosses the periodic cell's faces (the cell is a few diameters wide) and uses the neighbour tables,
so these tests exercise the packed code paths that the single-cylinder MISST checks never touch.
"""

import warnings

import numpy as np

from sbi_dmri.acquisition import Acquisition
from sbi_dmri.kernels.cylinder import cylinder_gpd
from sbi_dmri.kernels.sphere import sphere_gpd
from sbi_dmri.simulators.montecarlo import PackedCylinders, PackedSpheres, simulate

D, R, DELTA_SMALL, DELTA_BIG = 2.0, 3.0, 10.0, 20.0
B = np.array([2.0, 5.0, 10.0])  # ms/µm²; a 10 % larger radius moves S(b = 10) by 0.09


def _pgse_x():
    return Acquisition.pgse(B, np.tile([1.0, 0.0, 0.0], (len(B), 1)), delta=DELTA_SMALL, Delta=DELTA_BIG)


def _run(substrate, n_spins, key):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate(substrate, _pgse_x(), diffusivity=D, n_spins=n_spins, dt=0.02, key=key)


def _check(r, substrate, kernel):
    # Placement: walkers start uniformly in the cell, so the intra share is the volume fraction.
    f = substrate.volume_fraction
    n = r.n_spins
    assert abs(r.compartment_fractions["intra"] - f) < 4 * np.sqrt(f * (1 - f) / n), (r.compartment_fractions, f)
    # Intra signal: every obstacle has radius R, so it is the single-obstacle signal (GPD, tol 1e-3).
    intra, se = r.compartment_signals["intra"], r.compartment_stderr["intra"]
    assert np.all(np.abs(intra - kernel) <= 1e-3 + 3 * se), (intra, kernel, se)
    assert kernel[-1] < 0.85  # the restriction is visible: the test has teeth
    # The extra-axonal walkers, hindered but not confined, lose more signal than the confined ones.
    assert np.all(r.compartment_signals["extra"] < intra)


def test_random_packed_cylinders_volume_fraction_and_intra_signal():
    sub = PackedCylinders.random(12, R, 0.5, seed=3)  # equal radii, random sequential addition
    r = _run(sub, 15000, key=5)
    n = len(B)
    kernel = np.asarray(cylinder_gpd(B, np.tile([1.0, 0.0, 0.0], (n, 1)), np.full(n, DELTA_SMALL),
                                     np.full(n, DELTA_BIG), np.array([0.0, 0.0, 1.0]), R, D))
    _check(r, sub, kernel)


def test_random_packed_spheres_volume_fraction_and_intra_signal():
    sub = PackedSpheres.random(8, R, 0.3, seed=4)
    r = _run(sub, 15000, key=5)
    n = len(B)
    kernel = np.asarray(sphere_gpd(B, np.full(n, DELTA_SMALL), np.full(n, DELTA_BIG), R, D))
    _check(r, sub, kernel)


def test_hexagonal_extra_axonal_long_time_tortuosity():
    # Insulating cylinders on a hexagonal lattice: effective conductivity σ/σ0 = (1 − f)/(1 + f) up to
    # O(f⁶) (Rayleigh 1892; Perrins, McKenzie & McPhedran, Proc R Soc A 369:207, 1979: the f⁶ term is
    # 5e-5 here), so the long-time extra-axonal diffusivity ⊥ the axes is D∞/D0 = σ/(σ0 (1 − f)) =
    # 1/(1 + f). At t = 60 ms, √(D t) is 1.6 lattice constants and D_app has converged (0.7611 at 60 ms,
    # 0.7604 at 120 ms, same walkers).
    f = 0.3
    sub = PackedCylinders.hexagonal(2.0, f)
    T = 60.0
    acq = Acquisition.pgse(np.array([0.0]), np.array([[1.0, 0.0, 0.0]]), delta=T / 2 - 1e-6, Delta=T / 2)
    r = simulate(sub, acq, diffusivity=D, n_spins=20000, dt=0.03, key=1, record=True)
    extra = r.label == 1
    msd = r.displacement[extra, 0] ** 2 + r.displacement[extra, 1] ** 2  # µm², ⊥ the cylinder axes
    t = r.n_steps * 0.03
    d_app = msd.mean() / (4 * t) / D
    se = msd.std() / np.sqrt(extra.sum()) / (4 * t) / D
    assert abs(d_app - 1 / (1 + f)) < 0.02 + 3 * se, (d_app, se)  # 1 − f = 0.7 and 1 are both far outside

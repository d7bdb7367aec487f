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

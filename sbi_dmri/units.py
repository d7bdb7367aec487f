"""The unit system used everywhere inside sbi_dmri, and the conversions at the I/O edges.

| quantity            | unit inside       | note                                         |
|---------------------|-------------------|----------------------------------------------|
| length, radius      | µm                |                                              |
| time (δ, Δ, TE, dt) | ms                |                                              |
| gradient strength   | mT/m              |                                              |
| b-value             | ms/µm²            | 1 ms/µm² = 1000 s/mm² (FSL .bval is s/mm²)   |
| diffusivity         | µm²/ms            | free water at 37 °C ≈ 3.0                    |
| permeability κ      | µm/ms             | 1 µm/ms = 1e-3 m/s                           |
| q = γGδ             | rad/µm            |                                              |

Why these units: in SI, α_m⁶ for a 0.1 µm radius reaches 1e52 and overflows float32; in µm/ms
every quantity sits within a few decades of 1. Convert only where data enters or leaves.
"""

from __future__ import annotations

import numpy as np

#: Gyromagnetic ratio of ¹H in rad / (ms · mT/m · µm)  (= 2.6752218744e8 rad s⁻¹ T⁻¹).
GAMMA = 2.6752218744e-4

#: b-values above this (in ms/µm²) are taken to be in s/mm² by mistake (b = 100 ms/µm² is 1e5 s/mm²).
MAX_PLAUSIBLE_B = 100.0


def bval_s_per_mm2_to_ms_per_um2(b):
    """s/mm² → ms/µm² (FSL/BIDS .bval files are in s/mm²)."""
    return np.asarray(b, dtype=np.float64) / 1000.0


def bval_ms_per_um2_to_s_per_mm2(b):
    """ms/µm² → s/mm²."""
    return np.asarray(b, dtype=np.float64) * 1000.0


def seconds_to_ms(t):
    """s → ms."""
    return np.asarray(t, dtype=np.float64) * 1e3


def metres_to_um(x):
    """m → µm."""
    return np.asarray(x, dtype=np.float64) * 1e6


def tesla_per_metre_to_mT_per_m(g):
    """T/m → mT/m."""
    return np.asarray(g, dtype=np.float64) * 1e3


def diffusivity_si_to_um2_per_ms(d):
    """m²/s → µm²/ms (3e-9 m²/s → 3.0 µm²/ms)."""
    return np.asarray(d, dtype=np.float64) * 1e9


def diffusivity_mm2_per_s_to_um2_per_ms(d):
    """mm²/s → µm²/ms (3e-3 mm²/s → 3.0 µm²/ms)."""
    return np.asarray(d, dtype=np.float64) * 1e3


def permeability_si_to_um_per_ms(kappa):
    """m/s → µm/ms (1e-5 m/s → 0.01 µm/ms)."""
    return np.asarray(kappa, dtype=np.float64) * 1e3


def pgse_bvalue(G, delta, Delta):
    """b = γ²G²δ²(Δ − δ/3) for rectangular PGSE lobes.

    Args:
        G: gradient strength, mT/m.
        delta: pulse duration δ, ms.
        Delta: pulse separation Δ, ms.

    Returns:
        b-value in ms/µm².
    """
    return (GAMMA * G * delta) ** 2 * (Delta - delta / 3.0)


def pgse_gradient_strength(b, delta, Delta):
    """Inverse of `pgse_bvalue`: G in mT/m from b (ms/µm²), δ (ms), Δ (ms)."""
    b = np.asarray(b, dtype=np.float64)
    return np.sqrt(b / (GAMMA**2 * np.asarray(delta) ** 2 * (np.asarray(Delta) - np.asarray(delta) / 3.0)))

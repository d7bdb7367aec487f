"""NEXI, neurite exchange imaging (Jelescu et al., NeuroImage 256:119277, 2022).

Two exchanging pools, orientation-averaged (powder) signal:
- neurites: sticks with intrinsic diffusivity `d_i`, fraction `f`;
- extra-neurite space: isotropic Gaussian, diffusivity `d_e`;
- exchange time `t_ex` = 1/(k_ie + k_ei), with detailed balance f k_ie = (1 − f) k_ei, so
  k_ie = (1 − f)/t_ex and k_ei = f/t_ex (the paper's definition).

Kärger's narrow-pulse picture with t = Δ (the acquisition's `Delta`; free waveforms have none) and
each pool's exponent from the measured b-value, x = b D (so the non-exchanging limit is exact for
any pulse width); the powder average over the neurite angle is Gauss–Legendre quadrature in
ξ = cos(ĝ, n). Directions are ignored: give it direction-averaged shells at several Δ.
Valid for δ ≪ t_ex and barrier-limited exchange (see `kernels.exchange`); SMEX (Olesen et al.,
NeuroImage 2022) is the wide-pulse refinement, not implemented.

Default bounds (the paper's reported tissue range; t_ex 15–60 ms in rat cortex and hippocampus):
t_ex ∈ [1, 100] ms, d_i ∈ [1.0, 3.5] µm²/ms, d_e ∈ [0.5, 3.5] µm²/ms, f ∈ [0.1, 0.9].
"""

from __future__ import annotations

from ...kernels import exchange
from ..base import Compartment, Parameter
from ..composite import MultiCompartmentModel
from ..registry import register


def _nexi_signal(acq, t_ex, d_i, d_e, f):
    if acq.is_waveform:
        raise ValueError("nexi needs PGSE diffusion times Δ (narrow-pulse Kärger); this acquisition is a free waveform")
    k_ie, k_ei = exchange.rates_from_exchange_time(f, t_ex)
    return exchange.karger_powder_stick(acq.bvalues, acq.Delta, d_i, d_e, f, k_ie, k_ei)


def nexi_compartment() -> Compartment:
    """The exchanging neurite/extra-neurite pair as one compartment (it is not a sum of two)."""
    return Compartment(
        "nexi_exchange",
        (
            Parameter("t_ex", "ms", 1.0, 100.0, description="exchange time 1/(k_ie + k_ei)"),
            Parameter("d_i", "µm²/ms", 1.0, 3.5, description="intra-neurite diffusivity along neurites"),
            Parameter("d_e", "µm²/ms", 0.5, 3.5, description="extra-neurite diffusivity (isotropic)"),
            Parameter("f", "", 0.1, 0.9, description="neurite volume fraction"),
        ),
        _nexi_signal,
        "powder-averaged Kärger exchange, sticks ↔ isotropic (Jelescu et al. 2022)",
    )


@register("nexi", kind="tissue")
def nexi(**fixed) -> MultiCompartmentModel:
    """Free parameters `t_ex` (ms), `d_i`, `d_e` (µm²/ms), `f`; keywords fix any of them."""
    return MultiCompartmentModel(
        "nexi", {"exchange": nexi_compartment()}, fixed=fixed,
        description="neurite exchange imaging: powder Kärger sticks ↔ extra-neurite (Jelescu et al. 2022)",
    )

"""Orientation-dispersed compartments registered by name: watson_stick, watson_zeppelin, bingham_stick.

`orientation` is the distribution's mean axis μ; `kappa` the Watson concentration (0 = isotropic,
64 ≈ ODI 0.01, NODDI's upper bound; Zhang et al., NeuroImage 61:1000, 2012).
"""

from __future__ import annotations

import math

from ..kernels import watson as w
from .base import Compartment, Parameter, orientation_parameter
from .gaussian import diffusivity
from .registry import register

#: Watson concentration range of NODDI's fitting (κ ∈ [0, 64], i.e. ODI ∈ [0.01, 1]).
KAPPA_RANGE = (0.0, 64.0)


def concentration(name: str = "kappa", description: str = "Watson concentration κ (dimensionless)") -> Parameter:
    return Parameter(name, "", *KAPPA_RANGE, description=description)


@register("watson_stick")
def _watson_stick() -> Compartment:
    return Compartment(
        "watson_stick",
        (orientation_parameter(description="mean axis μ of the Watson distribution"), concentration(),
         diffusivity("d_par", "diffusivity along each stick")),
        lambda acq, orientation, kappa, d_par: w.watson_stick(acq.bvalues, acq.directions, orientation, kappa, d_par),
        "Watson-dispersed sticks (Zhang et al. 2012)",
    )


@register("watson_zeppelin")
def _watson_zeppelin() -> Compartment:
    return Compartment(
        "watson_zeppelin",
        (orientation_parameter(description="mean axis μ of the Watson distribution"), concentration(),
         diffusivity("d_par", "diffusivity along each zeppelin's axis"),
         diffusivity("d_perp", "diffusivity across each zeppelin's axis")),
        lambda acq, orientation, kappa, d_par, d_perp: w.watson_zeppelin(
            acq.bvalues, acq.directions, orientation, kappa, d_par, d_perp),
        "Watson-dispersed zeppelins (Zhang et al. 2012)",
    )


@register("bingham_stick")
def _bingham_stick() -> Compartment:
    # κ₂ = kappa_ratio · κ₁ keeps κ₁ ≥ κ₂ inside a box prior.
    return Compartment(
        "bingham_stick",
        (orientation_parameter(description="principal axis μ₁ of the Bingham distribution"),
         Parameter("psi", "rad", 0.0, math.pi, description="angle of the second axis μ₂ about μ₁"),
         concentration("kappa_1", "concentration about μ₁"),
         Parameter("kappa_ratio", "", 0.0, 1.0, description="κ₂/κ₁, concentration along μ₂ relative to κ₁"),
         diffusivity("d_par", "diffusivity along each stick")),
        lambda acq, orientation, psi, kappa_1, kappa_ratio, d_par: w.bingham_stick(
            acq.bvalues, acq.directions, orientation, psi, kappa_1, kappa_ratio * kappa_1, d_par),
        "Bingham-dispersed sticks (Tariq et al., NeuroImage 133:207, 2016)",
    )

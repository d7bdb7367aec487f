"""Gaussian compartments registered by name: ball, stick, zeppelin, tensor and spherical means."""

from __future__ import annotations

import math

from ..kernels import gaussian as k
from .base import Compartment, Parameter, orientation_parameter
from .registry import register

#: Default diffusivity range, µm²/ms: free water at 37 °C is ≈ 3.0.
D_RANGE = (0.1, 3.5)


def diffusivity(name: str, description: str) -> Parameter:
    return Parameter(name, "µm²/ms", *D_RANGE, description=description)


@register("ball")
def _ball() -> Compartment:
    return Compartment(
        "ball", (diffusivity("d_iso", "isotropic diffusivity"),),
        lambda acq, d_iso: k.ball(acq.bvalues, d_iso),
        "isotropic Gaussian diffusion, exp(−b d_iso)",
    )


@register("stick")
def _stick() -> Compartment:
    return Compartment(
        "stick", (orientation_parameter(), diffusivity("d_par", "diffusivity along the stick")),
        lambda acq, orientation, d_par: k.stick(acq.bvalues, acq.directions, orientation, d_par),
        "zero-radius cylinder, exp(−b d_par (ĝ·n)²) (Behrens et al. 2003)",
    )


@register("zeppelin")
def _zeppelin() -> Compartment:
    return Compartment(
        "zeppelin",
        (orientation_parameter(), diffusivity("d_par", "diffusivity along the axis"),
         diffusivity("d_perp", "diffusivity across the axis")),
        lambda acq, orientation, d_par, d_perp: k.zeppelin(acq.bvalues, acq.directions, orientation, d_par, d_perp),
        "axially symmetric tensor",
    )


@register("tensor")
def _tensor() -> Compartment:
    return Compartment(
        "tensor",
        (orientation_parameter(description="eigenvector of lambda_1"),
         Parameter("psi", "rad", 0.0, math.pi, description="rotation of the 2nd eigenvector about the 1st"),
         diffusivity("lambda_1", "eigenvalue along orientation"),
         diffusivity("lambda_2", "second eigenvalue"),
         diffusivity("lambda_3", "third eigenvalue")),
        lambda acq, orientation, psi, lambda_1, lambda_2, lambda_3: k.tensor(
            acq.bvalues, acq.directions, orientation, psi, lambda_1, lambda_2, lambda_3),
        "full diffusion tensor, exp(−b ĝᵀDĝ) (Basser et al. 1994)",
    )


@register("stick_spherical_mean")
def _stick_sm() -> Compartment:
    return Compartment(
        "stick_spherical_mean", (diffusivity("d_par", "diffusivity along the stick"),),
        lambda acq, d_par: k.stick_spherical_mean(acq.bvalues, d_par),
        "orientation-averaged stick, √π erf(√(b d_par))/(2√(b d_par)) (Kaden et al. 2016)",
    )


@register("zeppelin_spherical_mean")
def _zeppelin_sm() -> Compartment:
    return Compartment(
        "zeppelin_spherical_mean",
        (diffusivity("d_par", "diffusivity along the axis"), diffusivity("d_perp", "diffusivity across the axis")),
        lambda acq, d_par, d_perp: k.zeppelin_spherical_mean(acq.bvalues, d_par, d_perp),
        "orientation-averaged zeppelin (Kaden et al. 2016)",
    )

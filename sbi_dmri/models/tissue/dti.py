"""Diffusion tensor imaging (Basser et al., Biophys J 66:259, 1994) as a tissue model, and its metrics.

E = exp(−b ĝᵀDĝ), D = λ₁ e₁e₁ᵀ + λ₂ e₂e₂ᵀ + λ₃ e₃e₃ᵀ, with e₁ = `orientation` and e₂ at angle
`psi` about it (see `kernels.gaussian.tensor_frame`). Eigenvalues are not ordered by the model;
the metrics below are symmetric in them. Bounds: each λ on [0.1, 3.5] µm²/ms (the Gaussian
compartments' default range: up to free water at 37 °C).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..composite import MultiCompartmentModel
from ..registry import get, register


@register("dti", kind="tissue")
def dti(**fixed) -> MultiCompartmentModel:
    """Free parameters `orientation`, `psi` (rad, [0, π]), `lambda_1`, `lambda_2`, `lambda_3` (µm²/ms)."""
    return MultiCompartmentModel(
        "dti", {"tensor": get("tensor")}, fixed=fixed, description="single diffusion tensor (Basser et al. 1994)"
    )


def mean_diffusivity(lambda_1, lambda_2, lambda_3):
    """MD = (λ₁ + λ₂ + λ₃)/3, µm²/ms."""
    return (lambda_1 + lambda_2 + lambda_3) / 3.0


def fractional_anisotropy(lambda_1, lambda_2, lambda_3):
    """FA = √(3/2) |λ − MD| / |λ| ∈ [0, 1] (Basser & Pierpaoli, JMR B 111:209, 1996); 0 if isotropic."""
    md = mean_diffusivity(lambda_1, lambda_2, lambda_3)
    dev = (lambda_1 - md) ** 2 + (lambda_2 - md) ** 2 + (lambda_3 - md) ** 2
    norm = lambda_1**2 + lambda_2**2 + lambda_3**2
    ok = (norm > 0) & (dev > 0)  # double where: √ has no finite gradient at 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, 1.5 * dev / jnp.where(ok, norm, 1.0), 1.0)), 0.0)


def axial_diffusivity(lambda_1, lambda_2, lambda_3):
    """AD = the largest eigenvalue, µm²/ms."""
    return jnp.maximum(lambda_1, jnp.maximum(lambda_2, lambda_3))


def radial_diffusivity(lambda_1, lambda_2, lambda_3):
    """RD = mean of the two smaller eigenvalues, µm²/ms."""
    return (lambda_1 + lambda_2 + lambda_3 - axial_diffusivity(lambda_1, lambda_2, lambda_3)) / 2.0

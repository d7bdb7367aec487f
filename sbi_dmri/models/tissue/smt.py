"""Multi-compartment spherical mean technique (Kaden et al., MRM 76:1455, 2016).

The direction-averaged signal of each shell removes the orientation distribution altogether:

    Ē(b) = f_intra · stick_SM(b; λ) + (1 − f_intra) · zeppelin_SM(b; λ, λ_⊥),  λ_⊥ = (1 − f_intra) λ

with one intrinsic diffusivity λ (`d_par`, the same along neurites and in the extra-neurite space)
and the tortuosity approximation for λ_⊥. The model's measurements are spherical means: give it an
acquisition with one measurement per shell (or any b-values; directions are ignored). Bounds as in
the paper: 0 ≤ f_intra ≤ 1, 0 < λ ≤ 3 µm²/ms (free water at body temperature).
"""

from __future__ import annotations

from ..composite import MultiCompartmentModel, tortuosity
from ..registry import get, register


@register("smt", kind="tissue")
def smt(**fixed) -> MultiCompartmentModel:
    """Free parameters `d_par` (intrinsic diffusivity λ, µm²/ms, [0.1, 3.0]) and `f_intra` ([0, 1])."""
    return MultiCompartmentModel(
        "smt",
        {"intra": get("stick_spherical_mean"), "extra": get("zeppelin_spherical_mean")},
        derived={"d_perp": tortuosity("d_par", "f_intra")},
        bounds={"d_par": (0.1, 3.0)},
        fixed=fixed,
        description="spherical mean: stick + tortuous zeppelin, one diffusivity (Kaden et al. 2016)",
    )

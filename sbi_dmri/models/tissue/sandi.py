"""SANDI, soma and neurite density imaging (Palombo et al., NeuroImage 215:116835, 2020).

Direction-averaged signal of three non-exchanging compartments:

    Ē(b) = f_neurite · stick_SM(b; d_in) + f_soma · sphere_GPD(b, δ, Δ; r_soma, d_is) + f_extra · exp(−b d_e)

- neurites: sticks, spherical mean, intra-neurite axial diffusivity `d_in`;
- soma: an impermeable sphere of radius `r_soma` (GPD, Murday & Cotts), diffusivity `d_is`. A
  sphere's signal is already rotation invariant, so its spherical mean is itself;
- extracellular space: isotropic Gaussian, `d_e`.
Fractions f_neurite, f_soma, f_extra on the simplex (f_extra implied). Directions are ignored: give
direction-averaged shells, with the acquisition's δ and Δ.

Default bounds from the paper: r_soma ∈ [1, 12] µm, d_in ∈ [0.1, 3.0] µm²/ms, d_e ∈ [0.1, 3.0]
µm²/ms, d_is fixed to 3.0 µm²/ms (the paper fixes the intra-soma diffusivity, to which the signal is
insensitive at clinical/preclinical δ, Δ).
"""

from __future__ import annotations

from ..composite import MultiCompartmentModel
from ..registry import get, register


@register("sandi", kind="tissue")
def sandi(*, d_is: float | None = 3.0, **fixed) -> MultiCompartmentModel:
    """Free parameters `d_in`, `r_soma` (µm), `d_e` (µm²/ms), `f_neurite`, `f_soma` (Dirichlet(1) with f_extra).

    Args:
        d_is: intra-soma diffusivity, µm²/ms (fixed to 3.0 as in the paper; None frees it on [0.1, 3.0]).
        **fixed: further fixed values.
    """
    constants = {} if d_is is None else {"d_is": d_is}
    return MultiCompartmentModel(
        "sandi",
        {"neurite": get("stick_spherical_mean"), "soma": get("sphere_gpd"), "extra": get("ball")},
        rename={"neurite.d_par": "d_in", "soma.radius": "r_soma", "soma.diffusivity": "d_is", "extra.d_iso": "d_e"},
        bounds={"d_in": (0.1, 3.0), "r_soma": (1.0, 12.0), "d_is": (0.1, 3.0), "d_e": (0.1, 3.0)},
        fixed={**constants, **fixed},
        description="stick SM + sphere (soma) + ball, spherical mean (Palombo et al. 2020)",
    )

"""AxCaliber (Assaf et al., MRM 59:1347, 2008): axon radius from restricted diffusion across axons.

    E = f_restricted · E_cyl(R; d_par) + f_hindered · zeppelin(d_par, d_perp) + f_csf · exp(−b d_iso)

- restricted (intra-axonal): impermeable cylinders along `orientation`, GPD across (van Gelderen
  et al. 1994) with the acquisition's δ and Δ, free along the axis; one radius `radius` (`axcaliber`)
  or gamma-distributed radii, volume weighted ∝ R² (`axcaliber_gamma`, the paper's form:
  `radius_mean` ∈ [0.1, 10] µm, `radius_shape` k ∈ [1, 40] log-uniform);
- hindered (extra-axonal): a zeppelin with the same axis;
- CSF: a ball, d_iso fixed to 3.0 µm²/ms by default.
The parallel diffusivity `d_par` is shared by the axons (inside) and the hindered space, as in the
paper's fits; the restricted compartment uses it across the axon too (one intrinsic diffusivity).

Default bounds: radius ∈ [0.1, 10] µm (axon diameters of the paper's corpus callosum range, with
head room); d_par ∈ [0.1, 3.0], d_perp ∈ [0.1, 3.0] µm²/ms; fractions Dirichlet(1).
"""

from __future__ import annotations

from ..composite import MultiCompartmentModel
from ..registry import get, register


def _axcaliber(name: str, restricted: str, bounds: dict, d_iso, fixed) -> MultiCompartmentModel:
    constants = {} if d_iso is None else {"d_iso": d_iso}
    return MultiCompartmentModel(
        name,
        {"restricted": get(restricted), "hindered": get("zeppelin"), "csf": get("ball")},
        rename={"restricted.diffusivity": "d_par"},
        bounds={"d_par": (0.1, 3.0), "d_perp": (0.1, 3.0), **bounds},
        fixed={**constants, **fixed},
        description=f"{restricted} + zeppelin + ball, shared d_par (Assaf et al. 2008)",
    )


@register("axcaliber", kind="tissue")
def axcaliber(*, d_iso: float | None = 3.0, **fixed) -> MultiCompartmentModel:
    """Free parameters `orientation`, `radius` (µm, [0.1, 10]), `d_par`, `d_perp` (µm²/ms),
    `f_restricted`, `f_hindered` (Dirichlet(1) with f_csf); d_iso fixed (None frees it)."""
    return _axcaliber("axcaliber", "cylinder_gpd", {"radius": (0.1, 10.0)}, d_iso, fixed)


@register("axcaliber_gamma", kind="tissue")
def axcaliber_gamma(*, d_iso: float | None = 3.0, **fixed) -> MultiCompartmentModel:
    """As `axcaliber` with gamma-distributed radii: `radius_mean` (µm), `radius_shape` (k)."""
    return _axcaliber("axcaliber_gamma", "cylinder_gpd_gamma", {"radius_mean": (0.1, 10.0)}, d_iso, fixed)

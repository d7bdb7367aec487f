"""NODDI (Zhang et al., NeuroImage 61:1000, 2012): neurite orientation dispersion and density imaging.

    E = (1 − f_iso) [ndi · E_ic + (1 − ndi) · E_ec] + f_iso · exp(−b d_iso)

- intra-neurite E_ic: Watson-dispersed sticks (mean axis `orientation`, concentration κ, d_par);
- extra-neurite E_ec: Watson-dispersed zeppelins with the same axis and κ and the tortuosity
  d_perp = d_par (1 − ndi) (ndi is the intra-neurite fraction of the non-CSF tissue);
- CSF: an isotropic ball, d_iso.

Parameterised by ODI = (2/π) arctan(1/κ) rather than κ: ODI is bounded and roughly linear in what
the signal resolves, and the paper reports maps of ODI; a uniform prior on κ ∈ [0, 64] would put
90 % of its mass below ODI = 0.1 (κ > 6.3), a uniform prior on ODI spreads it over the dispersions seen
from coherent white matter (≈ 0.02) to cortex (≈ 0.5–0.9). The range [0.01, 0.99] is κ ∈ [0.016, 64],
the κ range of the NODDI toolbox. d_par = 1.7 and d_iso = 3.0 µm²/ms are fixed as in the paper.
"""

from __future__ import annotations

from ...kernels.watson import kappa_from_odi
from ..base import Parameter
from ..composite import MultiCompartmentModel, tortuosity
from ..registry import get, register

ODI_RANGE = (0.01, 0.99)


def noddi_weights(p):
    """Signal weights from NODDI's fractions: ndi of the tissue, f_iso of the voxel."""
    tissue = 1.0 - p["f_iso"]
    return {"intra": tissue * p["ndi"], "extra": tissue * (1.0 - p["ndi"]), "csf": p["f_iso"]}


@register("noddi", kind="tissue")
def noddi(*, d_par: float | None = 1.7, d_iso: float | None = 3.0, **fixed) -> MultiCompartmentModel:
    """Free parameters `orientation`, `odi` ∈ [0.01, 0.99], `ndi` ∈ [0, 1], `f_iso` ∈ [0, 1].

    Args:
        d_par: intrinsic diffusivity along neurites, µm²/ms (fixed; None frees it on [0.1, 3.0]).
        d_iso: CSF diffusivity, µm²/ms (fixed; None frees it on [0.1, 3.5]).
        **fixed: further fixed values, e.g. `f_iso=0.0` for white matter without CSF.
    """
    constants = {k: v for k, v in {"d_par": d_par, "d_iso": d_iso}.items() if v is not None}
    return MultiCompartmentModel(
        "noddi",
        {"intra": get("watson_stick"), "extra": get("watson_zeppelin"), "csf": get("ball")},
        fixed={**constants, **fixed},
        derived={"kappa": lambda p: kappa_from_odi(p["odi"]), "d_perp": tortuosity("d_par", "ndi")},
        bounds={"d_par": (0.1, 3.0)},
        weights=noddi_weights,
        weight_parameters=(
            Parameter("odi", "", *ODI_RANGE, description="orientation dispersion index (2/π) arctan(1/κ)"),
            Parameter("ndi", "", 0.0, 1.0, description="neurite density: intra-neurite fraction of tissue"),
            Parameter("f_iso", "", 0.0, 1.0, description="isotropic (CSF) volume fraction"),
        ),
        description="Watson sticks + tortuous Watson zeppelins + CSF ball (Zhang et al. 2012)",
    )

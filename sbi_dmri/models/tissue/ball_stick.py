"""Ball and stick (Behrens et al., MRM 50:1077, 2003): E = f_stick · stick + (1 − f_stick) · ball."""

from __future__ import annotations

from ..composite import MultiCompartmentModel
from ..registry import get, register


@register("ball_stick", kind="tissue")
def ball_stick(**fixed) -> MultiCompartmentModel:
    """Free parameters `orientation`, `d_par`, `d_iso` (µm²/ms, uniform on [0.1, 3.0]), `f_stick`.

    Keyword arguments fix parameters, e.g. `ball_stick(d_iso=3.0)`.
    """
    return MultiCompartmentModel(
        "ball_stick",
        {"stick": get("stick"), "ball": get("ball")},
        bounds={"d_par": (0.1, 3.0), "d_iso": (0.1, 3.0)},
        fixed=fixed,
        description="stick + ball, one fibre population (Behrens et al. 2003)",
    )

"""Restricted compartments registered by name: cylinders, spheres, parallel planes, gamma radii.

Closed forms (kernels in `sbi_dmri.kernels.{cylinder, sphere, planes, distributions}`), each with its
regime in the kernel docstring:
- `*_soderman`: short pulse, Δ → ∞ (δ ≪ R²/D ≪ Δ);
- `*_callaghan` / `planes_tanner`: short pulse, finite Δ (δ ≪ Δ, δ ≪ R²/D);
- `*_gpd`: Gaussian phase distribution for rectangular PGSE, or for any waveform when the
  acquisition is one (`acq.is_waveform`, static: the dispatch happens at trace time); valid for
  Dδ/R² ≳ 1, reads high for narrow pulses (+0.011 for the MISST cylinder at δ = 1 ms, b = 3);
- `*_neuman`: long-pulse asymptote (Dδ/R² ≫ 1).

Bounds. Radius 0.1–20 µm: from the thinnest axons seen by electron microscopy (≈ 0.1 µm) to large
axons and cell bodies (soma radii up to ≈ 20 µm); beyond 20 µm restriction is barely felt at
Δ ≤ 100 ms (R² ≫ DΔ) and the compartment is indistinguishable from free diffusion. Plane spacing
0.2–40 µm is the same range as a diameter. Diffusivity 0.1–3.5 µm²/ms (free water at 37 °C ≈ 3).
"""

from __future__ import annotations

from ..kernels import cylinder as cyl
from ..kernels import distributions as dist
from ..kernels import planes as pl
from ..kernels import sphere as sph
from .base import Compartment, Parameter, orientation_parameter
from .gaussian import D_RANGE
from .registry import register

RADIUS_RANGE = (0.1, 20.0)
SPACING_RANGE = (0.2, 40.0)
SHAPE_RANGE = (1.0, 40.0)


def _radius() -> Parameter:
    return Parameter("radius", "µm", *RADIUS_RANGE, description="pore radius")


def _spacing() -> Parameter:
    return Parameter("spacing", "µm", *SPACING_RANGE, description="distance between the planes")


def _diffusivity() -> Parameter:
    return Parameter("diffusivity", "µm²/ms", *D_RANGE, description="intrinsic diffusivity inside the pore")


def _pgse(acq, name: str):
    """(b, ĝ, δ, Δ) of a PGSE acquisition; a clear error for waveforms (no δ, Δ)."""
    if acq.is_waveform:
        raise ValueError(
            f"{name} is a PGSE (short-pulse or rectangular-lobe) closed form and needs δ and Δ; this "
            "acquisition is a free waveform: use the *_gpd compartment instead"
        )
    return acq.bvalues, acq.directions, acq.delta, acq.Delta


def _pgse_cylinder(name: str, kernel, description: str):
    def fn(acq, orientation, radius, diffusivity):
        return kernel(*_pgse(acq, name), orientation, radius, diffusivity)

    return Compartment(name, (orientation_parameter(), _radius(), _diffusivity()), fn, description)


def _pgse_sphere(name: str, kernel, description: str):
    def fn(acq, radius, diffusivity):
        b, _, delta, Delta = _pgse(acq, name)
        return kernel(b, delta, Delta, radius, diffusivity)

    return Compartment(name, (_radius(), _diffusivity()), fn, description)


def _pgse_planes(name: str, kernel, description: str):
    def fn(acq, orientation, spacing, diffusivity):
        return kernel(*_pgse(acq, name), orientation, spacing, diffusivity)

    params = (orientation_parameter(description="plane normal (n ≡ −n)"), _spacing(), _diffusivity())
    return Compartment(name, params, fn, description)


# ---------------------------------------------------------------------------------- cylinders
@register("cylinder_soderman")
def _cylinder_soderman() -> Compartment:
    return _pgse_cylinder("cylinder_soderman", cyl.cylinder_soderman,
                          "cylinder, short pulse, Δ → ∞ (Söderman & Jönsson 1995)")


@register("cylinder_callaghan")
def _cylinder_callaghan() -> Compartment:
    return _pgse_cylinder("cylinder_callaghan", cyl.cylinder_callaghan,
                          "cylinder, short pulse, finite Δ (Callaghan 1995)")


@register("cylinder_neuman")
def _cylinder_neuman() -> Compartment:
    return _pgse_cylinder("cylinder_neuman", cyl.cylinder_neuman, "cylinder, long-pulse limit (Neuman 1974)")


@register("cylinder_gpd")
def _cylinder_gpd() -> Compartment:
    def fn(acq, orientation, radius, diffusivity):
        if acq.is_waveform:
            return cyl.cylinder_gpd_waveform(acq.gradients, acq.dt, orientation, radius, diffusivity)
        return cyl.cylinder_gpd(*_pgse(acq, "cylinder_gpd"), orientation, radius, diffusivity)

    return Compartment("cylinder_gpd", (orientation_parameter(), _radius(), _diffusivity()), fn,
                       "cylinder, Gaussian phase (van Gelderen 1994; any waveform: Ianus 2013)")


@register("cylinder_gpd_gamma")
def _cylinder_gpd_gamma() -> Compartment:
    def fn(acq, orientation, radius_mean, radius_shape, diffusivity):
        if acq.is_waveform:
            return dist.cylinder_gpd_gamma_waveform(
                acq.gradients, acq.dt, orientation, radius_mean, radius_shape, diffusivity)
        return dist.cylinder_gpd_gamma(
            *_pgse(acq, "cylinder_gpd_gamma"), orientation, radius_mean, radius_shape, diffusivity)

    params = (
        orientation_parameter(),
        Parameter("radius_mean", "µm", *RADIUS_RANGE, description="mean of the gamma distribution of radii"),
        Parameter("radius_shape", "", *SHAPE_RANGE, scale="log",
                  description="gamma shape k (coefficient of variation 1/√k)"),
        _diffusivity(),
    )
    return Compartment("cylinder_gpd_gamma", params, fn,
                       "cylinders with gamma-distributed radii, volume (R²) weighted, GPD (AxCaliber, Assaf 2008)")


# ------------------------------------------------------------------------------------ spheres
@register("sphere_soderman")
def _sphere_soderman() -> Compartment:
    return _pgse_sphere("sphere_soderman", sph.sphere_soderman, "sphere, short pulse, Δ → ∞ (Söderman 1995)")


@register("sphere_callaghan")
def _sphere_callaghan() -> Compartment:
    return _pgse_sphere("sphere_callaghan", sph.sphere_callaghan,
                        "sphere, short pulse, finite Δ (Balinov et al. 1993)")


@register("sphere_neuman")
def _sphere_neuman() -> Compartment:
    return _pgse_sphere("sphere_neuman", sph.sphere_neuman, "sphere, long-pulse limit (Neuman 1974)")


@register("sphere_gpd")
def _sphere_gpd() -> Compartment:
    def fn(acq, radius, diffusivity):
        if acq.is_waveform:
            return sph.sphere_gpd_waveform(acq.gradients, acq.dt, radius, diffusivity)
        b, _, delta, Delta = _pgse(acq, "sphere_gpd")
        return sph.sphere_gpd(b, delta, Delta, radius, diffusivity)

    return Compartment("sphere_gpd", (_radius(), _diffusivity()), fn,
                       "sphere, Gaussian phase (Murday & Cotts 1968; any waveform)")


# ------------------------------------------------------------------------------------- planes
@register("planes_soderman")
def _planes_soderman() -> Compartment:
    return _pgse_planes("planes_soderman", pl.planes_soderman, "parallel planes, short pulse, Δ → ∞")


@register("planes_tanner")
def _planes_tanner() -> Compartment:
    return _pgse_planes("planes_tanner", pl.planes_tanner,
                        "parallel planes, short pulse, finite Δ (Tanner & Stejskal 1968)")


@register("planes_neuman")
def _planes_neuman() -> Compartment:
    return _pgse_planes("planes_neuman", pl.planes_neuman, "parallel planes, long-pulse limit (Neuman 1974)")


@register("planes_gpd")
def _planes_gpd() -> Compartment:
    def fn(acq, orientation, spacing, diffusivity):
        if acq.is_waveform:
            return pl.planes_gpd_waveform(acq.gradients, acq.dt, orientation, spacing, diffusivity)
        return pl.planes_gpd(*_pgse(acq, "planes_gpd"), orientation, spacing, diffusivity)

    params = (orientation_parameter(description="plane normal (n ≡ −n)"), _spacing(), _diffusivity())
    return Compartment("planes_gpd", params, fn, "parallel planes, Gaussian phase (any waveform)")


#: Every compartment this module registers (the registry property tests iterate over it).
RESTRICTED = (
    "cylinder_soderman", "cylinder_callaghan", "cylinder_gpd", "cylinder_neuman", "cylinder_gpd_gamma",
    "sphere_soderman", "sphere_callaghan", "sphere_gpd", "sphere_neuman",
    "planes_soderman", "planes_tanner", "planes_gpd", "planes_neuman",
)
#: Those that also accept free-waveform acquisitions.
WAVEFORM_CAPABLE = ("cylinder_gpd", "cylinder_gpd_gamma", "sphere_gpd", "planes_gpd")

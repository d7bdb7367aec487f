"""Models are data: named, bounded parameters with units, a default prior, and a signal function.

`Model.signal(acquisition, params)` returns E = S/S0 of shape (n_meas,) for ONE voxel, `params` a
dict of arrays (scalars, or (3,) unit vectors for orientations). Batch with `jax.vmap(model.signal,
in_axes=(None, 0))`. Nothing here is jitted: callers jit at their entry points.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Literal

import jax
import numpy as np

from ..acquisition import Acquisition
from ..priors import AxisUniform, Dirichlet, LogUniform, Prior, Uniform

Params = Mapping[str, jax.Array]

ParameterKind = Literal["scalar", "orientation", "fraction"]


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A model parameter.

    Attributes:
        name: its name in `params` dicts, configs and output maps.
        unit: physical unit ("µm", "µm²/ms", "" for fractions, "unit vector" for axes, ...).
        lower, upper: bounds of the default prior (ignored for orientations).
        kind: "scalar", "orientation" (an axis, n ≡ −n, shape (3,)) or "fraction" (volume fraction;
            the free fractions of a multi-compartment model share a Dirichlet prior).
        scale: "linear" (uniform default prior) or "log" (log-uniform).
        description: one line for `sbi-dmri models`.
    """

    name: str
    unit: str
    lower: float = float("nan")
    upper: float = float("nan")
    kind: ParameterKind = "scalar"
    scale: Literal["linear", "log"] = "linear"
    description: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return (3,) if self.kind == "orientation" else ()

    @property
    def size(self) -> int:
        return 3 if self.kind == "orientation" else 1

    @property
    def bounds(self) -> tuple[float, float] | None:
        return None if self.kind == "orientation" else (self.lower, self.upper)

    def with_bounds(self, lower: float, upper: float) -> "Parameter":
        return dataclasses.replace(self, lower=float(lower), upper=float(upper))

    def renamed(self, name: str) -> "Parameter":
        return dataclasses.replace(self, name=name)


def orientation_parameter(name: str = "orientation", description: str = "axis (n ≡ −n)") -> Parameter:
    return Parameter(name, "unit vector", kind="orientation", description=description)


def default_prior(parameters: tuple[Parameter, ...], fraction_group: tuple[str, ...] = ()) -> Prior:
    """Uniform boxes (log-uniform for scale="log"), uniform axes, one Dirichlet(1) over `fraction_group`."""
    factors = []
    for p in parameters:
        if p.name in fraction_group:
            continue
        if p.kind == "orientation":
            factors.append(AxisUniform(p.name))
        elif p.scale == "log":
            factors.append(LogUniform(p.name, p.lower, p.upper))
        else:
            factors.append(Uniform(p.name, p.lower, p.upper))
    if fraction_group:
        factors.append(Dirichlet(fraction_group))
    return Prior(factors)


class Model(abc.ABC):
    """A signal model: compartment or tissue model. Subclasses set `name`, `parameters`, `signal`."""

    name: str
    parameters: tuple[Parameter, ...]
    description: str = ""
    #: `signal` is a closed form (False for a Monte Carlo library's parameters: no likelihood to evaluate)
    has_closed_form: bool = True

    @abc.abstractmethod
    def signal(self, acquisition: Acquisition, params: Params) -> jax.Array:
        """E = S/S0, shape (n_meas,), for one voxel."""

    # -------------------------------------------------------------- derived metadata
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def bounds(self) -> dict[str, tuple[float, float] | None]:
        return {p.name: p.bounds for p in self.parameters}

    @property
    def units(self) -> dict[str, str]:
        return {p.name: p.unit for p in self.parameters}

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"model {self.name!r} has no parameter {name!r}; it has {self.parameter_names}")

    @property
    def prior(self) -> Prior:
        """The default prior: uniform within the bounds (see `default_prior`)."""
        return default_prior(self.parameters)

    def check_params(self, params: Params) -> None:
        """Eager check that `params` has exactly this model's parameter names (a clear KeyError)."""
        missing = set(self.parameter_names) - set(params)
        extra = set(params) - set(self.parameter_names)
        if missing or extra:
            raise KeyError(
                f"model {self.name!r} takes parameters {list(self.parameter_names)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )

    def describe(self) -> str:
        """Multi-line human-readable listing of the parameters (used by `sbi-dmri models`)."""
        lines = [f"{self.name}: {self.description}".rstrip(": ")]
        for p in self.parameters:
            rng = "" if p.bounds is None else f"[{p.lower:g}, {p.upper:g}]"
            scale = " log" if p.scale == "log" else ""
            lines.append(f"    {p.name:<14} {p.unit:<12} {rng}{scale}  {p.description}".rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, parameters={list(self.parameter_names)})"


class Compartment(Model):
    """A single compartment: a kernel with named parameters.

    Args:
        name: registry name.
        parameters: the kernel's parameters.
        fn: `fn(acquisition, **params) -> E (n_meas,)`, pure JAX.
        description: one line, with the reference.
    """

    def __init__(
        self, name: str, parameters: tuple[Parameter, ...], fn: Callable[..., jax.Array], description: str = ""
    ):
        self.name, self.parameters, self.description = name, tuple(parameters), description
        self._fn = fn

    def signal(self, acquisition: Acquisition, params: Params) -> jax.Array:
        return self._fn(acquisition, **{n: params[n] for n in self.parameter_names})


def as_arrays(params: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Convert user-given parameter values (floats, lists) into NumPy arrays."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
